"""What the simulator answers on the wire, checked against the real API server's
documented behaviour: Status bodies, omission, generation, watch semantics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sim.kube import KubeSim

NS = "finance"
DEPLOY = f"/apis/apps/v1/namespaces/{NS}/deployments"
V1 = f"{DEPLOY}/finance-service-v1"


@pytest.fixture
async def http(kube_sim: KubeSim) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=kube_sim.url) as s:
        yield s


async def _json(resp: aiohttp.ClientResponse) -> Any:
    return json.loads(await resp.read())


async def test_a_missing_deployment_is_a_not_found_status(http: aiohttp.ClientSession) -> None:
    r = await http.get(f"{DEPLOY}/nope")
    assert r.status == 404
    assert await _json(r) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
        "code": 404,
    }


async def test_a_stale_resource_version_gets_409_conflict(http: aiohttp.ClientSession) -> None:
    body = await _json(await http.get(V1))
    stale = body["metadata"]["resourceVersion"]
    await http.patch(
        V1, json={"metadata": {"labels": {"x": "1"}}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    body["metadata"]["resourceVersion"] = stale
    r = await http.put(V1, json=body)
    assert r.status == 409
    status = await _json(r)
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        'Operation cannot be fulfilled on deployments.apps "finance-service-v1": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )


async def test_negative_replicas_on_the_scale_is_422_invalid(http: aiohttp.ClientSession) -> None:
    r = await http.patch(
        f"{V1}/scale", json={"spec": {"replicas": -1}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert r.status == 422
    status = await _json(r)
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'Scale.autoscaling "finance-service-v1" is invalid: spec.replicas: Invalid value: -1: '
        "must be greater than or equal to 0"
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: -1: must be greater than or equal to 0",
            "field": "spec.replicas",
        }
    ]


async def test_an_unknown_patch_type_is_415(http: aiohttp.ClientSession) -> None:
    r = await http.patch(f"{V1}/scale", data=b'{"spec":{"replicas":1}}', headers={"Content-Type": "text/plain"})
    assert r.status == 415
    assert (await _json(r))["reason"] == "UnsupportedMediaType"


async def test_strategic_and_json_patches_apply_to_the_fields_we_use(
    http: aiohttp.ClientSession, kube_sim: KubeSim
) -> None:
    smp = {"spec": {"template": {"spec": {"containers": [{"name": "finance-service", "image": "img:2"}]}}}}
    r = await http.patch(V1, json=smp, headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.status == 200
    containers = (await _json(r))["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"], bool(c.get("readinessProbe"))) for c in containers] == [
        ("finance-service", "img:2", True)
    ]
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 4},
        {"op": "replace", "path": "/spec/replicas", "value": 2},
    ]
    r = await http.patch(V1, json=ops, headers={"Content-Type": "application/json-patch+json"})
    assert r.status == 200 and (await _json(r))["spec"]["replicas"] == 2


async def test_generation_bumps_on_spec_and_annotation_changes_only(http: aiohttp.ClientSession) -> None:
    merge = {"Content-Type": "application/merge-patch+json"}
    r = await http.patch(V1, json={"metadata": {"labels": {"team": "fin"}}}, headers=merge)
    assert (await _json(r))["metadata"]["generation"] == 1
    r = await http.patch(V1, json={"metadata": {"annotations": {"a": "b"}}}, headers=merge)
    assert (await _json(r))["metadata"]["generation"] == 2
    r = await http.patch(f"{V1}/scale", json={"spec": {"replicas": 3}}, headers=merge)
    r = await http.get(V1)
    assert (await _json(r))["metadata"]["generation"] == 3


async def test_a_no_op_patch_keeps_the_resource_version(http: aiohttp.ClientSession, kube_sim: KubeSim) -> None:
    await kube_sim.settled()
    before = (await _json(await http.get(V1)))["metadata"]["resourceVersion"]
    r = await http.patch(
        f"{V1}/scale", json={"spec": {"replicas": 4}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert (await _json(r))["metadata"]["resourceVersion"] == before


async def test_scaling_to_zero_omits_replicas_from_the_scale_spec_and_status_zeroes_vanish(
    http: aiohttp.ClientSession, kube_sim: KubeSim
) -> None:
    v2 = f"{DEPLOY}/finance-service-v2"
    r = await http.patch(
        f"{v2}/scale", json={"spec": {"replicas": 0}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert (await _json(r))["spec"] == {}
    await kube_sim.wait_for(lambda: not kube_sim.list("pods", NS, "version=v2"))
    await kube_sim.settled()
    status = (await _json(await http.get(v2)))["status"]
    assert set(status) == {"observedGeneration", "conditions"}


async def test_lists_carry_kind_api_version_and_resource_version(http: aiohttp.ClientSession) -> None:
    body = await _json(await http.get(DEPLOY))
    assert (body["kind"], body["apiVersion"]) == ("DeploymentList", "apps/v1")
    assert int(body["metadata"]["resourceVersion"]) > 0
    body = await _json(await http.get(f"{V1}"))
    assert (body["kind"], body["apiVersion"]) == ("Deployment", "apps/v1")


async def test_a_bad_label_selector_is_400(http: aiohttp.ClientSession) -> None:
    r = await http.get(f"/api/v1/namespaces/{NS}/pods", params={"labelSelector": "app in (x"})
    assert r.status == 400
    r = await http.get(f"/api/v1/namespaces/{NS}/pods", params={"fieldSelector": "spec.image=x"})
    assert r.status == 400
    assert (await _json(r))["message"] == "field label not supported: spec.image"


async def _events(resp: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    out = []
    async for line in resp.content:
        out.append(json.loads(line))
    return out


async def test_watch_from_zero_sends_current_state_then_ends_cleanly_at_timeout(http: aiohttp.ClientSession) -> None:
    r = await http.get(DEPLOY, params={"watch": "True", "timeoutSeconds": "1", "resourceVersion": "0"})
    assert r.status == 200
    events = await _events(r)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "finance-service-v1"),
        ("ADDED", "finance-service-v2"),
    ]


async def test_watch_with_bookmarks_ends_with_a_bookmark_carrying_only_the_resource_version(
    http: aiohttp.ClientSession,
) -> None:
    listed = await _json(await http.get(DEPLOY))
    r = await http.get(
        DEPLOY,
        params={
            "watch": "true",
            "timeoutSeconds": "1",
            "allowWatchBookmarks": "TRUE",
            "resourceVersion": listed["metadata"]["resourceVersion"],
        },
    )
    events = await _events(r)
    assert events[-1]["type"] == "BOOKMARK"
    obj = events[-1]["object"]
    assert (obj["kind"], obj["apiVersion"]) == ("Deployment", "apps/v1")
    assert set(obj["metadata"]) <= {"resourceVersion", "creationTimestamp", "annotations"}


async def test_a_too_old_resource_version_gets_an_error_event_with_410(
    http: aiohttp.ClientSession, kube_sim: KubeSim
) -> None:
    kube_sim.scale_as(NS, "finance-service-v1", 5)
    kube_sim.compact()
    r = await http.get(DEPLOY, params={"watch": "1", "resourceVersion": "5"})
    assert r.status == 200
    events = await _events(r)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["code"], status["reason"]) == (410, "Expired")
    assert status["message"].startswith("too old resource version: 5 (")


async def test_objects_leaving_a_label_selector_arrive_as_deleted(
    http: aiohttp.ClientSession, kube_sim: KubeSim
) -> None:
    listed = await _json(await http.get(DEPLOY, params={"labelSelector": "tier=web"}))
    kube_sim.apply({"apiVersion": "apps/v1", "kind": "Deployment", **_relabelled(kube_sim, {"tier": "web"})})
    kube_sim.apply({"apiVersion": "apps/v1", "kind": "Deployment", **_relabelled(kube_sim, {})})
    r = await http.get(
        DEPLOY,
        params={
            "watch": "true",
            "labelSelector": "tier=web",
            "timeoutSeconds": "1",
            "resourceVersion": listed["metadata"]["resourceVersion"],
        },
    )
    types = [e["type"] for e in await _events(r)]
    assert types[0] == "ADDED" and types[-1] == "DELETED"


def _relabelled(sim: KubeSim, extra: dict[str, str]) -> dict[str, Any]:
    d = sim.get("deployments", NS, "finance-service-v1")
    assert d is not None
    labels = {"app": "finance-service", "version": "v1", **extra}
    return {"metadata": {**d["metadata"], "labels": labels, "resourceVersion": None}, "spec": d["spec"]}


async def test_scale_as_records_the_external_manager_for_spec_replicas(kube_sim: KubeSim) -> None:
    d = kube_sim.scale_as(NS, "finance-service-v2", 1 + 2, field_manager="argocd-controller")
    owners = [
        (e["manager"], e.get("subresource", ""))
        for e in d["metadata"]["managedFields"]
        if "f:replicas" in e["fieldsV1"].get("f:spec", {})
    ]
    assert owners == [("argocd-controller", "scale")]


async def test_discovery_lists_the_scale_subresource_in_autoscaling_v1(http: aiohttp.ClientSession) -> None:
    apps = await _json(await http.get("/apis/apps/v1"))
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    groups = {g["name"] for g in (await _json(await http.get("/apis")))["groups"]}
    assert {"apps", "coordination.k8s.io", "events.k8s.io"} <= groups
    core = {r["name"] for r in (await _json(await http.get("/api/v1")))["resources"]}
    assert {"pods", "events", "namespaces"} <= core


async def test_events_k8s_io_validation_messages_match_the_real_server(http: aiohttp.ClientSession) -> None:
    url = f"/apis/events.k8s.io/v1/namespaces/{NS}/events"
    regarding = {"kind": "Deployment", "namespace": NS, "name": "finance-service-v1"}
    r = await http.post(url, json={"metadata": {"name": "e1"}, "type": "Info", "regarding": regarding})
    assert r.status == 422
    assert (await _json(r))["message"] == (
        'Event.events.k8s.io "e1" is invalid: '
        '[eventTime: Required value, type: Invalid value: "": has invalid value: Info]'
    )
    r = await http.post(
        url, json={"metadata": {"name": "e2"}, "eventTime": "2026-01-01T00:00:00.000000Z", "regarding": regarding}
    )
    msg = (await _json(r))["message"]
    for part in (
        "reportingController: Required value",
        "reportingInstance: Required value",
        "action: Required value",
        "reason: Required value",
        'type: Invalid value: "": has invalid value: ',
    ):
        assert part in msg
    r = await http.post(
        url,
        json={
            "metadata": {"name": "e3"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "regarding": regarding,
            "reportingController": "rollback-receiver",
            "reportingInstance": "r-0",
            "action": "Rollback",
            "reason": "RolledBack",
            "type": "Warning",
            "note": "x" * 1025,
        },
    )
    assert (await _json(r))["message"] == (
        'Event.events.k8s.io "e3" is invalid: message: Invalid value: "": can have at most 1024 characters'
    )


async def test_deleting_a_pod_leaves_it_terminating_then_the_controller_replaces_it(
    http: aiohttp.ClientSession, kube_sim: KubeSim
) -> None:
    pod = kube_sim.list("pods", NS, "version=v2")[0]
    name = pod["metadata"]["name"]
    r = await http.delete(f"/api/v1/namespaces/{NS}/pods/{name}")
    body = await _json(r)
    assert body["metadata"]["deletionTimestamp"] and body["metadata"]["deletionGracePeriodSeconds"] == 30
    await kube_sim.wait_for(lambda: kube_sim.get("pods", NS, name) is None)
    await kube_sim.wait_for(
        lambda: (
            (kube_sim.get("deployments", NS, "finance-service-v2") or {}).get("status", {}).get("readyReplicas") == 1
        )
    )
    assert [p["metadata"]["name"] for p in kube_sim.list("pods", NS, "version=v2")] != [name]
