"""Bearer-token RBAC and fault injection, as a test of the receiver would use them."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from sim.kube import AccessRule, KubeSim
from tests.fixtures.kube import fast_sim

NS = "finance"
ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "Role",
    "metadata": {"name": "rollback-receiver", "namespace": NS},
    "rules": [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale"],
            "verbs": ["get", "patch"],
            "resourceNames": ["finance-service-v1", "finance-service-v2"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    ],
}


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[KubeSim, Path, Path]]:
    sim = fast_sim(tokens={"receiver-token": AccessRule.from_role(ROLE, NS), "nobody": []})
    sim.load_manifests(KubeSim.default_manifests())
    await sim.start()
    try:
        yield (
            sim,
            sim.write_kubeconfig(tmp_path / "ok", token="receiver-token"),
            sim.write_kubeconfig(tmp_path / "bad", token="wrong"),
        )
    finally:
        await sim.stop()


async def _client(path: Path) -> ApiClient:
    return await config.new_client_from_config(config_file=str(path))


async def test_the_role_allows_scaling_exactly_the_named_deployments(secured: tuple[KubeSim, Path, Path]) -> None:
    sim, ok, _ = secured
    api = await _client(ok)
    try:
        apps = client.AppsV1Api(api)
        scale = await apps.patch_namespaced_deployment_scale(
            "finance-service-v2", NS, {"spec": {"replicas": 0}}, _content_type="application/merge-patch+json"
        )
        assert scale.spec.replicas is None
        with pytest.raises(ApiException) as e:
            await apps.patch_namespaced_deployment_scale(
                "other", NS, {"spec": {"replicas": 0}}, _content_type="application/merge-patch+json"
            )
        assert e.value.status == 403
        assert json.loads(e.value.body)["message"] == (
            'deployments.apps "other" is forbidden: User "receiver-token" cannot patch resource '
            '"deployments/scale" in API group "apps" in the namespace "finance"'
        )
        with pytest.raises(ApiException) as e:
            await apps.patch_namespaced_deployment("finance-service-v1", NS, {"spec": {"replicas": 9}})
        assert e.value.status == 403
    finally:
        await api.close()
    assert sim.requests[-1].user == "receiver-token"


async def test_an_unknown_token_is_401_and_a_known_token_without_rules_403(
    secured: tuple[KubeSim, Path, Path], tmp_path: Path
) -> None:
    sim, _, bad = secured
    api = await _client(bad)
    try:
        with pytest.raises(ApiException) as e:
            await client.CoreV1Api(api).list_namespaced_pod(NS)
        assert e.value.status == 401
    finally:
        await api.close()
    api = await _client(sim.write_kubeconfig(tmp_path / "nobody", token="nobody"))
    try:
        with pytest.raises(ApiException) as e:
            await client.CoreV1Api(api).list_namespaced_pod(NS)
        assert e.value.status == 403
        assert json.loads(e.value.body)["message"] == (
            'pods is forbidden: User "nobody" cannot list resource "pods" in API group "" in the namespace "finance"'
        )
    finally:
        await api.close()


def test_from_role_reads_cluster_roles_for_every_namespace() -> None:
    rules = AccessRule.from_role(
        {"kind": "ClusterRole", "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}]}
    )
    assert rules[0].allows("get", "apps", "deployments", "scale", "anywhere", "x")
    assert not rules[0].allows("patch", "apps", "deployments", "", "anywhere", "x")


async def test_a_503_fault_fails_the_given_number_of_times_then_clears(kube_sim: KubeSim, kube_api: ApiClient) -> None:
    kube_sim.faults.fail(verb="patch", resource="deployments/scale", status=503, times=2)
    apps = client.AppsV1Api(kube_api)
    statuses = []
    for _ in range(3):
        try:
            await apps.patch_namespaced_deployment_scale(
                "finance-service-v1", NS, {"spec": {"replicas": 5}}, _content_type="application/merge-patch+json"
            )
            statuses.append(200)
        except ApiException as e:
            statuses.append(e.status)
    assert statuses == [503, 503, 200]
    assert [r.status for r in kube_sim.requests.matching(resource="deployments/scale")] == [503, 503, 200]


async def test_429_is_plain_text_with_retry_after_as_priority_and_fairness_answers(kube_sim: KubeSim) -> None:
    kube_sim.faults.fail(verb="get", resource="deployments", status=429, retry_after=0, times=1)
    async with aiohttp.ClientSession() as s:
        r = await s.get(f"{kube_sim.url}/apis/apps/v1/namespaces/{NS}/deployments/finance-service-v1")
        assert r.status == 429
        assert r.headers["Retry-After"] == "0"
        assert r.headers["Content-Type"].startswith("text/plain")
        assert await r.text() == "Too many requests, please try again later.\n"
        r = await s.get(f"{kube_sim.url}/apis/apps/v1/namespaces/{NS}/deployments/finance-service-v1")
        assert r.status == 200


async def test_a_share_of_requests_fail(kube_sim: KubeSim) -> None:
    kube_sim.faults = type(kube_sim.faults)(seed=7)
    kube_sim.faults.fail(verb="list", resource="pods", status=500, share=0.5)
    async with aiohttp.ClientSession() as s:
        codes = [(await s.get(f"{kube_sim.url}/api/v1/namespaces/{NS}/pods")).status for _ in range(40)]
    assert 5 < codes.count(500) < 35 and codes.count(200) + codes.count(500) == 40


async def test_a_dropped_connection_surfaces_as_a_client_error(kube_sim: KubeSim) -> None:
    # aiohttp (and so kubernetes-asyncio) retries an idempotent request once on a fresh
    # connection that closes unanswered; two drops reach the caller.
    kube_sim.faults.drop_connections(times=2)
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientError):
            await (await s.get(f"{kube_sim.url}/apis/apps/v1/namespaces/{NS}/deployments")).read()
        r = await s.get(f"{kube_sim.url}/apis/apps/v1/namespaces/{NS}/deployments")
        assert r.status == 200


async def test_a_watch_cut_after_some_seconds_breaks_the_stream(kube_sim: KubeSim) -> None:
    kube_sim.faults.cut_watches(after_seconds=0.1, times=1)
    async with aiohttp.ClientSession() as s:
        r = await s.get(
            f"{kube_sim.url}/apis/apps/v1/namespaces/{NS}/deployments", params={"watch": "true", "timeoutSeconds": "30"}
        )
        with pytest.raises(aiohttp.ClientError):
            async for _ in r.content:
                pass


async def test_leader_election_style_lease_takeover_counts_transitions(kube_api: ApiClient) -> None:
    coord = client.CoordinationV1Api(kube_api)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    lease = await coord.create_namespaced_lease(
        NS,
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="receiver-leader"),
            spec=client.V1LeaseSpec(
                holder_identity="a", lease_duration_seconds=15, acquire_time=t0, renew_time=t0, lease_transitions=0
            ),
        ),
    )
    lease.spec.holder_identity, lease.spec.lease_transitions = "b", 1
    taken = await coord.replace_namespaced_lease("receiver-leader", NS, lease)
    lease.spec.holder_identity = "c"  # a racing candidate with the same read
    with pytest.raises(ApiException) as e:
        await coord.replace_namespaced_lease("receiver-leader", NS, lease)
    assert e.value.status == 409
    assert (taken.spec.holder_identity, taken.spec.lease_transitions) == ("b", 1)
