"""deploy/ as a kustomize base: schema-valid, and the settings the rollout guide asks for."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from receiver.domain.settings import load_config, parse_config
from tests.deploy.helpers import DEPLOY, ROOT, run, tool

K8S_VERSION = kubernetes_validate.latest_version()
Obj = dict[str, Any]


_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {"type": "string",
             "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
# The part of prometheus-operator's ServiceMonitor CRD schema (monitoring.coreos.com/v1)
# this base uses, closed like the API server's structural schema would prune: a
# misspelt field is an error here rather than silently dropped in a cluster.
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object", "required": ["name", "namespace"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": _LABELS},
        },
        "spec": {
            "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "additionalProperties": False, "properties": {"matchLabels": _LABELS}},
                "namespaceSelector": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"any": {"type": "boolean"},
                                   "matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": _DURATION, "scrapeTimeout": _DURATION,
                    },
                }},
            },
        },
    },
}


def validate(obj: Obj) -> None:
    """Kubernetes' own schema, or for prometheus-operator's ServiceMonitor the one above."""
    if obj.get("kind") == "ServiceMonitor":
        jsonschema.validate(obj, SERVICE_MONITOR)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def load_all(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@cache
def built_text() -> str:
    result = run(tool("kubectl"), "kustomize", str(DEPLOY))
    assert result.returncode == 0, result.stderr
    return result.stdout


def built() -> list[Obj]:
    return [d for d in yaml.safe_load_all(built_text()) if d]


def one(kind: str, objs: list[Obj] | None = None) -> Obj:
    [obj] = [o for o in (objs if objs is not None else built()) if o["kind"] == kind]
    return obj


def base_files() -> list[Path]:
    return [DEPLOY / f for f in yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]]


def test_kustomize_builds_the_whole_base() -> None:
    kinds = sorted(o["kind"] for o in built())
    assert kinds == sorted([
        "Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
        "Service", "Deployment", "PodDisruptionBudget", "NetworkPolicy",
    ])


def test_the_optional_monitoring_kustomization_builds_the_servicemonitor_alone() -> None:
    result = run(tool("kubectl"), "kustomize", str(DEPLOY / "monitoring"))
    assert result.returncode == 0, result.stderr
    objs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert [o["kind"] for o in objs] == ["ServiceMonitor"]
    for obj in objs:
        validate(obj)


@pytest.mark.parametrize("path", [*base_files(), DEPLOY / "secrets.example.yaml"], ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_schema(path: Path) -> None:
    for obj in load_all(path):
        validate(obj)


def test_the_built_objects_are_valid_against_the_kubernetes_schema() -> None:
    for obj in built():
        validate(obj)


def test_schema_validation_catches_a_misspelt_field() -> None:
    deployment = load_all(DEPLOY / "deployment.yaml")[0]
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_schema_validation_catches_a_misspelt_servicemonitor_field() -> None:
    monitor = load_all(DEPLOY / "monitoring" / "servicemonitor.yaml")[0]
    monitor["spec"]["endpoints"][0]["scrape_timeout"] = "10s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


def test_the_servicemonitor_scrapes_what_the_pod_annotations_announce_under_the_job_the_rules_use() -> None:
    monitor = load_all(DEPLOY / "monitoring" / "servicemonitor.yaml")[0]
    service, deployment = one("Service"), one("Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    [endpoint] = monitor["spec"]["endpoints"]
    [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    [container_port] = [p for p in container()["ports"] if p["name"] == port["targetPort"]]
    assert str(container_port["containerPort"]) == annotations["prometheus.io/port"]
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"
    # No jobLabel: prometheus-operator names the job after the Service, as ReceiverDown expects.
    assert "jobLabel" not in monitor["spec"]
    rules = (DEPLOY / "prometheus" / "receiver-rules.yml").read_text()
    assert f'up{{job="{service["metadata"]["name"]}"}}' in rules


def test_the_configmap_carries_the_repositorys_config_yaml() -> None:
    root = (ROOT / "config.yaml").read_text()
    assert (DEPLOY / "config.yaml").read_text() == root, (
        "deploy/config.yaml must be a copy of config.yaml: cp config.yaml deploy/config.yaml"
    )
    cm = one("ConfigMap")
    assert cm["data"]["config.yaml"] == root
    parse_config(cm["data"]["config.yaml"], "ConfigMap")
    deployment = one("Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]


def container() -> Obj:
    [c] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def test_the_probes_are_exactly_the_rollout_guides() -> None:
    c = container()
    assert c["livenessProbe"] == {
        "httpGet": {"path": "/health/live", "port": "http"},
        "initialDelaySeconds": 30, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3,
    }
    assert c["readinessProbe"] == {
        "httpGet": {"path": "/health/ready", "port": "http"},
        "initialDelaySeconds": 10, "periodSeconds": 5, "timeoutSeconds": 3,
        "successThreshold": 1, "failureThreshold": 3,
    }
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in c["ports"]


def test_two_replicas_run_serve_with_the_mounted_config_and_a_lease_identity() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    c = container()
    assert [*c["command"], *c["args"]] == [
        "receiver", "serve", "--config", "/etc/receiver/config.yaml", "--listen", "0.0.0.0:8080",
    ]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    webhook = env["RECEIVER_WEBHOOK_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert webhook["name"] == "rollback-receiver" and not webhook.get("optional", False)
    assert all("value" not in e for e in c["env"]), "secrets only from Secrets"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/receiver"]["readOnly"] is True
    assert "subPath" not in mounts["/etc/receiver"], "subPath mounts never see ConfigMap updates"
    assert set(c["resources"]["requests"]) == set(c["resources"]["limits"]) == {"cpu", "memory"}


def test_the_pod_runs_non_root_read_only_without_privileges() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]
    sc = container()["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_service_pdb_and_networkpolicy_select_the_receiver_pods() -> None:
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = one("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["metadata"]["name"] == "rollback-receiver"
    assert service["metadata"]["namespace"] == "rollback-receiver"
    assert service["spec"]["ports"][0]["port"] == 8080
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    policy = one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [ingress] = policy["ingress"]
    assert ingress["ports"] == [{"port": 8080, "protocol": "TCP"}]
    sources = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
               for p in ingress["from"]}
    assert sources == {"monitoring"}
    egress_ports = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443)} <= egress_ports


def test_everything_but_the_role_lives_in_the_receivers_namespace() -> None:
    for obj in built():
        if obj["kind"] in {"Namespace"}:
            continue
        expected = "finance" if obj["kind"] in {"Role", "RoleBinding"} else "rollback-receiver"
        assert obj["metadata"]["namespace"] == expected, obj["kind"]


def test_the_secret_example_is_not_part_of_the_base_and_holds_only_placeholders() -> None:
    assert "secrets.example.yaml" not in (DEPLOY / "kustomization.yaml").read_text().split("#")[0]
    assert all(o["kind"] != "Secret" for o in built())
    [secret, am_secret] = load_all(DEPLOY / "secrets.example.yaml")
    keys = {e["valueFrom"]["secretKeyRef"]["key"] for e in container()["env"]
            if "secretKeyRef" in e.get("valueFrom", {})}
    assert keys <= set(secret["stringData"])
    assert all("REPLACE" in v for v in secret["stringData"].values())
    assert am_secret["stringData"]["rollback-receiver-token"].startswith("REPLACE")


# -- RBAC ---------------------------------------------------------------------------------


def rbac() -> list[Obj]:
    return load_all(DEPLOY / "rbac.yaml")


def role_rules() -> list[Obj]:
    return list(one("Role", rbac())["rules"])


def allowed(group: str, resource: str, verb: str, name: str | None = None) -> bool:
    for rule in role_rules():
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            names = rule.get("resourceNames")
            if names is None or (name is not None and name in names):
                return True
    return False


def test_rbac_yaml_holds_the_service_account_role_and_binding_and_nothing_else() -> None:
    assert sorted(o["kind"] for o in rbac()) == ["Role", "RoleBinding", "ServiceAccount"]
    binding, sa, role = one("RoleBinding", rbac()), one("ServiceAccount", rbac()), one("Role", rbac())
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"]


def test_the_role_grants_what_the_executor_does_in_each_target_namespace() -> None:
    config = load_config(ROOT / "config.yaml")
    role = one("Role", rbac())
    for target in config.targets:
        assert role["metadata"]["namespace"] == target.namespace
        for deployment in (target.stable, target.canary):
            assert allowed("apps", "deployments/scale", "patch", deployment), deployment
            assert allowed("apps", "deployments", "get", deployment)
            assert allowed("apps", "deployments", "patch", deployment)  # outcome annotations
        for verb in ("list", "watch"):
            assert allowed("apps", "deployments", verb)
            assert allowed("", "pods", verb)
        assert allowed("events.k8s.io", "events", "create")
        lease_ns = config.settings.lease_namespace or target.namespace
        assert lease_ns == role["metadata"]["namespace"]
        for verb in ("list", "watch", "create"):
            assert allowed("coordination.k8s.io", "leases", verb)
        for verb in ("get", "update"):
            assert allowed("coordination.k8s.io", "leases", verb, f"rollback-{target.name}")
            assert not allowed("coordination.k8s.io", "leases", verb, "another-apps-leader-lock")


def test_the_role_grants_nothing_beyond_the_executors_needs() -> None:
    assert not allowed("apps", "deployments/scale", "patch", "some-other-deployment")
    assert not allowed("apps", "deployments", "patch", "some-other-deployment")
    assert not allowed("apps", "deployments", "delete", "finance-service-v2")
    assert not allowed("", "pods", "delete")
    assert not allowed("", "pods", "get", "x")
    assert not allowed("", "secrets", "get")
    assert not allowed("", "events", "create")  # only events.k8s.io/v1 Events are written
    for verb in ("patch", "delete"):
        assert not allowed("coordination.k8s.io", "leases", verb, "rollback-finance-service")
    assert not allowed("apps", "deployments/scale", "update", "finance-service-v2")
    for rule in role_rules():
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        if "resourceNames" in rule:
            # The API server ignores resourceNames for create and most list/watch calls:
            # a rule that relied on it there would grant more than it appears to.
            assert not {"create", "list", "watch", "deletecollection"} & set(rule["verbs"]), rule


def test_the_simulator_reads_the_role_as_kube_apiserver_would() -> None:
    """The executor's RBAC test enforces deploy/rbac.yaml through AccessRule.from_role."""
    auth = pytest.importorskip("sim.kube.auth")
    rules = auth.AccessRule.from_role(one("Role", rbac()))

    def can(verb: str, group: str, resource: str, sub: str = "", name: str = "",
            namespace: str = "finance") -> bool:
        return bool(auth.allowed(rules, verb, group, resource, sub, namespace, name))

    assert can("patch", "apps", "deployments", "scale", "finance-service-v2")
    assert not can("get", "apps", "deployments", "scale", "finance-service-v1")  # never read
    assert can("patch", "apps", "deployments", "", "finance-service-v1")
    assert can("watch", "apps", "deployments")
    assert can("list", "", "pods")
    assert can("create", "events.k8s.io", "events")
    assert can("update", "coordination.k8s.io", "leases", "", "rollback-finance-service")
    assert not can("update", "coordination.k8s.io", "leases", "", "finance-service")  # not ours
    assert can("create", "coordination.k8s.io", "leases")
    assert not can("patch", "apps", "deployments", "scale", "payments-v2")
    assert not can("patch", "apps", "deployments", "scale", "finance-service-v2", namespace="default")
    assert not can("delete", "apps", "deployments", "", "finance-service-v2")
    assert not can("get", "", "secrets", "", "anything")
