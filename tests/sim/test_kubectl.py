"""The runbook's own kubectl commands against the simulator, as on a real cluster."""

from __future__ import annotations

from pathlib import Path

from sim.kube import KubeSim
from tests.fixtures.kube import Kubectl

CRASHY = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: crashy
  namespace: finance
  annotations:
    sim.rollback-receiver.io/pod-behavior: crashloop
spec:
  replicas: 2
  progressDeadlineSeconds: 1
  selector: {matchLabels: {app: crashy}}
  template:
    metadata: {labels: {app: crashy}}
    spec:
      containers: [{name: app, image: "ghcr.io/example/crashy:1"}]
"""


async def test_get_deploy_shows_the_week_1_split(kubectl: Kubectl) -> None:
    r = await kubectl("get", "deploy")
    assert r.returncode == 0, r.stderr
    lines = [line.split() for line in r.stdout.splitlines()]
    assert lines[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    rows = {cells[0]: cells[1:4] for cells in lines[1:]}
    assert rows == {
        "finance-service-v1": ["4/4", "4", "4"],
        "finance-service-v2": ["1/1", "1", "1"],
    }


async def test_get_pods_by_label_lists_only_the_selected_running_pods(kubectl: Kubectl) -> None:
    r = await kubectl("get", "pods", "-l", "app=finance-service,version=v1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert len(lines) == 5
    for line in lines[1:]:
        name, ready, status, restarts, _age = line.split()
        assert name.startswith("finance-service-v1-")
        assert (ready, status, restarts) == ("1/1", "Running", "0")


async def test_the_runbook_scales_v2_away_and_v1_up_and_rollout_status_reports_success(
    kubectl: Kubectl, kube_sim: KubeSim
) -> None:
    r = await kubectl("scale", "deployment", "finance-service-v2", "--replicas=0")
    assert (r.returncode, r.stdout.strip()) == (0, "deployment.apps/finance-service-v2 scaled")
    r = await kubectl("scale", "deployment", "finance-service-v1", "--replicas=5")
    assert (r.returncode, r.stdout.strip()) == (0, "deployment.apps/finance-service-v1 scaled")
    r = await kubectl("rollout", "status", "deployment/finance-service-v1", "--timeout=20s")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith('deployment "finance-service-v1" successfully rolled out')
    v1 = kube_sim.get("deployments", "finance", "finance-service-v1")
    assert v1 is not None and v1["status"]["availableReplicas"] == 5
    scale_patches = kube_sim.requests.matching(method="PATCH", resource="deployments/scale")
    assert [p.json() for p in scale_patches] == [{"spec": {"replicas": 0}}, {"spec": {"replicas": 5}}]
    assert {p.content_type for p in scale_patches} == {"application/merge-patch+json"}
    await kube_sim.wait_for(lambda: not kube_sim.list("pods", "finance", "version=v2"))
    r = await kubectl("get", "pods", "-l", "app=finance-service", "-o", "name")
    assert sorted(line.split("/")[1][:18] for line in r.stdout.split()) == ["finance-service-v1"] * 5


async def test_rollout_status_waits_until_new_pods_are_ready(kubectl: Kubectl, kube_sim: KubeSim) -> None:
    kube_sim.ready_delay = 0.5
    await kubectl("scale", "deployment", "finance-service-v1", "--replicas=6")
    r = await kubectl("rollout", "status", "deployment/finance-service-v1", "--timeout=20s")
    assert r.returncode == 0, r.stderr
    assert (
        'Waiting for deployment "finance-service-v1" rollout to finish: 4 of 6 updated replicas are available...'
        in r.stdout
    )
    assert "successfully rolled out" in r.stdout


async def test_rollout_status_reports_the_progress_deadline_of_a_crash_looping_deployment(
    kubectl: Kubectl, tmp_path: Path, kube_sim: KubeSim
) -> None:
    manifest = tmp_path / "crashy.yaml"
    manifest.write_text(CRASHY)
    r = await kubectl("create", "--validate=false", "-f", str(manifest))
    assert r.returncode == 0, r.stderr
    r = await kubectl("rollout", "status", "deployment/crashy", "--timeout=20s")
    assert r.returncode == 1
    assert 'error: deployment "crashy" exceeded its progress deadline' in r.stderr
    r = await kubectl("get", "pods", "-l", "app=crashy")
    statuses = {line.split()[2] for line in r.stdout.splitlines()[1:]}
    assert statuses == {"CrashLoopBackOff"}


async def test_get_events_shows_the_controller_scaling(kubectl: Kubectl) -> None:
    await kubectl("scale", "deployment", "finance-service-v1", "--replicas=5")
    r = await kubectl("get", "events", "--field-selector", "involvedObject.kind=Deployment")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "Scaled up replica set finance-service-v1-" in r.stdout
    assert "from 4 to 5" in r.stdout


async def test_describe_deployment_shows_replicas_conditions_and_events(kubectl: Kubectl) -> None:
    r = await kubectl("describe", "deployment", "finance-service-v2")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Replicas:               1 desired | 1 updated | 1 total | 1 available | 0 unavailable" in out
    assert "Progressing    True    NewReplicaSetAvailable" in out
    assert "NewReplicaSet:   finance-service-v2-" in out
    assert "Scaled up replica set finance-service-v2-" in out


async def test_scaling_a_missing_deployment_prints_the_servers_not_found(kubectl: Kubectl) -> None:
    r = await kubectl("scale", "deployment", "finance-service-v3", "--replicas=1")
    assert r.returncode == 1
    assert 'deployments.apps "finance-service-v3" not found' in r.stderr


async def test_get_deploy_in_yaml_round_trips_the_stored_object(kubectl: Kubectl) -> None:
    r = await kubectl(
        "get",
        "deploy",
        "finance-service-v1",
        "-o",
        "jsonpath={.metadata.generation} {.status.observedGeneration} {.spec.replicas}",
    )
    assert r.stdout == "1 1 4"
    await kubectl("scale", "deployment", "finance-service-v1", "--replicas=3")
    r = await kubectl("rollout", "status", "deployment/finance-service-v1", "--timeout=10s")
    assert r.returncode == 0, r.stderr
    r = await kubectl(
        "get",
        "deploy",
        "finance-service-v1",
        "-o",
        "jsonpath={.metadata.generation} {.status.observedGeneration} {.spec.replicas}",
    )
    assert r.stdout == "2 2 3"
