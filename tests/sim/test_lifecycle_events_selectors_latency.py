"""Simulator requirements a review found untested: added latency, Deployment create and
delete with garbage collection, core v1 Event validation, fieldSelector on pods, and
kubectl patch of every type. Each checks what the real API server does (sources cited)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from sim.kube import KubeSim
from tests.fixtures.kube import Kubectl

NS = "finance"
V1 = "finance-service-v1"


# --- added latency -----------------------------------------------------------------


async def _received(sim: KubeSim, verb: str, resource: str) -> None:
    await sim.wait_for(lambda: bool(sim.requests.matching(verb=verb, resource=resource)))


async def test_added_latency_lets_a_later_fast_request_answer_first_until_faults_are_cleared(
    kube_sim: KubeSim, kube_api: ApiClient
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    kube_sim.faults.latency(0.3, verb="get", resource="deployments")
    slow = asyncio.create_task(apps.read_namespaced_deployment(V1, NS))
    await _received(kube_sim, "get", "deployments")
    pods = await core.list_namespaced_pod(NS)  # sent after the get, answered before it
    assert len(pods.items) == 5
    assert not slow.done()
    assert (await slow).metadata.name == V1

    kube_sim.faults.clear()
    kube_sim.requests.clear()
    # Now only pod lists are slow: a list sent first is overtaken by the (no longer
    # delayed) get; had clear() kept the get's rule, the list would have won.
    kube_sim.faults.latency(0.3, verb="list", resource="pods")
    listing = asyncio.create_task(core.list_namespaced_pod(NS))
    await _received(kube_sim, "list", "pods")
    assert (await apps.read_namespaced_deployment(V1, NS)).metadata.name == V1
    assert not listing.done()
    await listing
    kube_sim.faults.clear()
    assert kube_sim.faults.delay_for("list", "pods") == 0


# --- Deployment create / delete through the typed API -------------------------------


def _deployment(name: str, replicas: int = 2) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="ghcr.io/example/app:1")]),
            ),
        ),
    )


async def test_creating_a_deployment_returns_201_and_the_controller_creates_its_pods(
    kube_sim: KubeSim, kube_api: ApiClient
) -> None:
    apps = client.AppsV1Api(kube_api)
    created, status, _ = await apps.create_namespaced_deployment_with_http_info(NS, _deployment("billing"))
    assert status == 201
    assert isinstance(created, client.V1Deployment)
    assert created.metadata.uid and created.metadata.creation_timestamp is not None
    assert created.metadata.generation == 1
    assert (created.kind, created.api_version) == ("Deployment", "apps/v1")
    await kube_sim.wait_for(lambda: len(kube_sim.list("pods", NS, "app=billing")) == 2)
    await kube_sim.wait_for(
        lambda: (kube_sim.get("deployments", NS, "billing") or {}).get("status", {}).get("readyReplicas") == 2
    )
    d = await apps.read_namespaced_deployment("billing", NS)
    assert (d.status.observed_generation, d.status.available_replicas) == (1, 2)


async def test_a_second_create_of_the_same_name_is_409_already_exists(kube_api: ApiClient) -> None:
    apps = client.AppsV1Api(kube_api)
    with pytest.raises(ApiException) as e:
        await apps.create_namespaced_deployment(NS, _deployment(V1))
    assert e.value.status == 409
    assert json.loads(e.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'deployments.apps "{V1}" already exists',
        "reason": "AlreadyExists",
        "details": {"name": V1, "group": "apps", "kind": "deployments"},
        "code": 409,
    }


async def test_deleting_a_deployment_returns_a_success_status_and_its_pods_terminate_then_go(
    kube_sim: KubeSim, kube_api: ApiClient
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    before = await core.list_namespaced_pod(NS, label_selector="version=v1")
    names = {p.metadata.name for p in before.items}
    uid = (await apps.read_namespaced_deployment(V1, NS)).metadata.uid
    terminating: set[str] = set()
    deleted: set[str] = set()

    async def follow() -> None:
        async with watch.Watch() as w:
            async for ev in w.stream(
                core.list_namespaced_pod,
                NS,
                label_selector="version=v1",
                resource_version=before.metadata.resource_version,
                timeout_seconds=20,
            ):
                pod = ev["object"]
                if ev["type"] == "MODIFIED" and pod.metadata.deletion_timestamp is not None:
                    assert pod.metadata.deletion_grace_period_seconds == 30
                    terminating.add(pod.metadata.name)
                elif ev["type"] == "DELETED":
                    assert pod.metadata.name in terminating, "deleted without a grace period"
                    deleted.add(pod.metadata.name)
                    if deleted == names:
                        return

    follower = asyncio.create_task(follow())
    await _received(kube_sim, "watch", "pods")
    # kubernetes-asyncio's delete returns V1Status for the default (background) propagation,
    # as the real store's finalizeDelete does for an object deleted at once.
    status, code, _ = await apps.delete_namespaced_deployment_with_http_info(V1, NS)
    assert code == 200
    assert isinstance(status, client.V1Status)
    assert status.status == "Success"
    assert (status.details.name, status.details.group, status.details.kind, status.details.uid) == (
        V1,
        "apps",
        "deployments",
        uid,
    )
    await asyncio.wait_for(follower, 20)
    assert deleted == names == terminating
    assert (await core.list_namespaced_pod(NS, label_selector="version=v1")).items == []
    with pytest.raises(ApiException) as e:
        await apps.read_namespaced_deployment(V1, NS)
    assert e.value.status == 404
    assert kube_sim.list("replicasets", NS, "version=v1") == []


# --- core v1 Events ------------------------------------------------------------------
# pkg/apis/core/validation/events.go: a core v1 create gets only legacyValidateEvent, so
# the involvedObject's namespace must match the Event's, and an Event with eventTime set
# needs reportingController (so named in the message even on core v1, where the JSON field
# is reportingComponent), reportingInstance, action and reason. The type is not checked
# on core v1 (only events.k8s.io/v1 insists on Normal or Warning).


@pytest.fixture
async def http(kube_sim: KubeSim) -> Any:
    async with aiohttp.ClientSession(base_url=kube_sim.url) as s:
        yield s


CORE_EVENTS = f"/api/v1/namespaces/{NS}/events"
INVOLVED = {"kind": "Deployment", "namespace": NS, "name": V1, "apiVersion": "apps/v1"}


async def _post(http: aiohttp.ClientSession, body: dict[str, Any]) -> tuple[int, Any]:
    r = await http.post(CORE_EVENTS, json=body)
    return r.status, json.loads(await r.read())


async def test_a_core_v1_event_without_an_involved_object_is_invalid_as_the_real_server_words_it(
    http: aiohttp.ClientSession,
) -> None:
    code, body = await _post(http, {"metadata": {"name": "e1"}, "reason": "RolledBack", "type": "Normal"})
    assert code == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'Event "e1" is invalid: involvedObject.namespace: Invalid value: "": does not match event.namespace'
    )
    assert body["details"] == {
        "name": "e1",
        "kind": "Event",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": 'Invalid value: "": does not match event.namespace',
                "field": "involvedObject.namespace",
            }
        ],
    }
    code, body = await _post(
        http, {"metadata": {"name": "e2"}, "involvedObject": {**INVOLVED, "namespace": "other"}, "type": "Normal"}
    )
    assert (code, body["message"]) == (
        422,
        'Event "e2" is invalid: involvedObject.namespace: Invalid value: "other": does not match event.namespace',
    )


async def test_a_core_v1_event_with_event_time_needs_the_reporting_fields(http: aiohttp.ClientSession) -> None:
    code, body = await _post(
        http,
        {"metadata": {"name": "e3"}, "involvedObject": INVOLVED, "eventTime": "2026-01-01T00:00:00.000000Z"},
    )
    assert code == 422
    assert body["message"] == (
        'Event "e3" is invalid: [reportingController: Required value, '
        'reportingController: Invalid value: "": name part must be non-empty, '
        'reportingController: Invalid value: "": name part must consist of alphanumeric characters, '
        "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or "
        "'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'), "
        "reportingInstance: Required value, action: Required value, reason: Required value]"
    )


async def test_a_core_v1_event_is_created_with_any_type_but_events_k8s_io_insists_on_normal_or_warning(
    kube_api: ApiClient,
) -> None:
    core = client.CoreV1Api(kube_api)
    ev = await core.create_namespaced_event(
        NS,
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(name="ok"),
            involved_object=client.V1ObjectReference(**{"kind": "Deployment", "namespace": NS, "name": V1}),
            reason="RolledBack",
            message="rolled back to v1",
            type="Info",
            source=client.V1EventSource(component="rollback-receiver"),
        ),
    )
    assert (ev.type, ev.involved_object.name, ev.source.component) == ("Info", V1, "rollback-receiver")
    listed = await core.list_namespaced_event(NS, field_selector="involvedObject.name=" + V1)
    assert "ok" in {e.metadata.name for e in listed.items}


# --- fieldSelector on pods ----------------------------------------------------------


async def test_field_selector_metadata_namespace_narrows_namespaced_and_all_namespace_pod_lists(
    kube_sim: KubeSim, kube_api: ApiClient
) -> None:
    other = _deployment("other", replicas=1)
    other.metadata.namespace = "payments"
    kube_sim.apply(
        client.ApiClient().sanitize_for_serialization(other) | {"apiVersion": "apps/v1", "kind": "Deployment"}
    )
    await kube_sim.wait_for(lambda: len(kube_sim.list("pods", "payments")) == 1)
    core = client.CoreV1Api(kube_api)

    everywhere = await core.list_pod_for_all_namespaces()
    assert {p.metadata.namespace for p in everywhere.items} == {NS, "payments"}
    only = await core.list_pod_for_all_namespaces(field_selector="metadata.namespace=payments")
    assert [p.metadata.namespace for p in only.items] == ["payments"]
    not_finance = await core.list_pod_for_all_namespaces(field_selector="metadata.namespace!=finance")
    assert [p.metadata.namespace for p in not_finance.items] == ["payments"]
    here = await core.list_namespaced_pod(NS, field_selector=f"metadata.namespace={NS}")
    assert len(here.items) == 5 and {p.metadata.namespace for p in here.items} == {NS}
    elsewhere = await core.list_namespaced_pod(NS, field_selector="metadata.namespace=payments")
    assert elsewhere.items == []


async def test_kubectl_field_selector_on_namespace_and_an_unsupported_field_gets_the_real_400(
    kubectl: Kubectl,
) -> None:
    r = await kubectl("get", "pods", "-A", "--field-selector", f"metadata.namespace={NS}", "-o", "name")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 5
    r = await kubectl("get", "pods", "-A", "--field-selector", "metadata.namespace=nowhere", "-o", "name")
    assert (r.returncode, r.stdout) == (0, "")
    r = await kubectl("get", "pods", "--field-selector", "spec.image=x")
    assert r.returncode == 1
    assert r.stderr.startswith("Error from server (BadRequest): ")
    assert r.stderr.strip().endswith("field label not supported: spec.image")


async def test_an_unsupported_field_selector_on_deployments_gets_the_generic_message(
    kube_api: ApiClient,
) -> None:
    # runtime.DefaultMetaV1FieldSelectorConversion: kinds without their own field labels.
    with pytest.raises(ApiException) as e:
        await client.AppsV1Api(kube_api).list_namespaced_deployment(NS, field_selector="spec.replicas=4")
    assert e.value.status == 400
    body = json.loads(e.value.body)
    assert (body["reason"], body["message"]) == (
        "BadRequest",
        '"spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"',
    )


# --- kubectl patch ------------------------------------------------------------------


async def test_kubectl_patch_strategic_json_and_merge_change_the_deployment(
    kubectl: Kubectl, kube_sim: KubeSim
) -> None:
    smp = {"spec": {"template": {"spec": {"containers": [{"name": "finance-service", "image": "img:2"}]}}}}
    r = await kubectl("patch", "deployment", V1, "--type=strategic", "-p", json.dumps(smp))
    assert (r.returncode, r.stdout.strip()) == (0, f"deployment.apps/{V1} patched"), r.stderr
    d = kube_sim.get("deployments", NS, V1)
    assert d is not None
    (container,) = d["spec"]["template"]["spec"]["containers"]
    # merged by name: the image changed, the probe and ports the patch left out stay
    assert (container["image"], container["ports"][0]["containerPort"]) == ("img:2", 8080)
    assert "readinessProbe" in container
    assert d["metadata"]["generation"] == 2

    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 4},
        {"op": "replace", "path": "/spec/replicas", "value": 2},
    ]
    r = await kubectl("patch", "deployment", V1, "--type=json", "-p", json.dumps(ops))
    assert (r.returncode, r.stdout.strip()) == (0, f"deployment.apps/{V1} patched"), r.stderr
    assert (kube_sim.get("deployments", NS, V1) or {})["spec"]["replicas"] == 2

    r = await kubectl("patch", "deployment", V1, "--type=merge", "-p", '{"metadata":{"labels":{"team":"fin"}}}')
    assert (r.returncode, r.stdout.strip()) == (0, f"deployment.apps/{V1} patched"), r.stderr
    labels = (kube_sim.get("deployments", NS, V1) or {})["metadata"]["labels"]
    assert labels == {"app": "finance-service", "version": "v1", "team": "fin"}

    patches = kube_sim.requests.matching(method="PATCH", resource="deployments", name=V1)
    assert [p.content_type for p in patches] == [
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "application/merge-patch+json",
    ]
    r = await kubectl("patch", "deployment", V1, "--type=json", "-p", json.dumps(ops[:1]))
    # the test op now fails: 422 Invalid without causes, which kubectl prints this way
    assert r.returncode == 1
    assert r.stderr.startswith("The request is invalid: ")
    assert r.stderr.strip().endswith("testing value /spec/replicas failed: test failed")


async def test_an_unknown_patch_type_on_a_deployment_is_415_listing_the_accepted_types(
    http: aiohttp.ClientSession,
) -> None:
    r = await http.patch(
        f"/apis/apps/v1/namespaces/{NS}/deployments/{V1}",
        data=b'{"spec":{"replicas":1}}',
        headers={"Content-Type": "application/xml"},
    )
    assert r.status == 415
    # apiserver installer.go: JSONPatch, MergePatch, StrategicMergePatch, ApplyYAMLPatch,
    # joined by negotiation.errUnsupportedMediaType.
    assert json.loads(await r.read()) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json, application/apply-patch+yaml",
        "reason": "UnsupportedMediaType",
        "code": 415,
    }
