"""Client-side timeouts: an API server that accepts and never answers cannot hang a call."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio.client import ApiClient

from receiver.kube import Kube, KubeError, Mirror, RetryPolicy
from sim.kube import KubeSim
from tests.executor.conftest import CANARY, NS

QUICK = RetryPolicy(base_seconds=0.005, cap_seconds=0.05, give_up_after_seconds=20,
                    request_timeout_seconds=0.3, connect_timeout_seconds=0.3,
                    watch_margin_seconds=0.3)


def _count(sim: KubeSim, verb: str, resource: str) -> int:
    return sum(1 for r in sim.requests if r.verb == verb and r.resource == resource)


async def test_a_scale_patch_the_api_server_never_answers_times_out_and_is_sent_again(
    kube_sim: KubeSim, kube_api: ApiClient,
) -> None:
    kube = Kube(kube_api, QUICK)
    black_hole = kube_sim.faults.latency(3600, verb="patch", resource="deployments/scale")

    patch = asyncio.create_task(kube.scale_deployment(NS, CANARY, 0))
    await kube_sim.wait_for(lambda: _count(kube_sim, "patch", "deployments/scale") == 1)
    kube_sim.faults.latencies.remove(black_hole)  # the retry is answered
    await asyncio.wait_for(patch, 10)  # the first PATCH is still unanswered (its answer is an hour away)
    assert _count(kube_sim, "patch", "deployments/scale") == 2
    canary = kube_sim.get("deployments", NS, CANARY)
    assert canary is not None and canary["spec"]["replicas"] == 0


async def test_a_calls_timeouts_are_retried_and_then_reported_as_transient(
    kube_sim: KubeSim, kube_api: ApiClient,
) -> None:



    kube = Kube(kube_api, RetryPolicy(base_seconds=0.005, cap_seconds=0.05,
                                      give_up_after_seconds=1, request_timeout_seconds=0.2))
    kube_sim.faults.latency(3600, verb="get", resource="deployments")
    with pytest.raises(KubeError) as err:
        await kube.read_deployment(NS, CANARY)
    assert err.value.status == 0 and err.value.transient
    assert "Timeout" in str(err.value)
    assert _count(kube_sim, "get", "deployments") >= 3


async def test_a_watch_that_stays_silent_past_its_timeout_is_opened_again(
    kube_sim: KubeSim, kube_api: ApiClient,
) -> None:
    kube = Kube(kube_api, QUICK)
    mirror = Mirror(kube, "deployments", NS, watch_timeout=(1, 1))
    kube_sim.faults.latency(3600, verb="watch", resource="deployments")
    mirror.start()
    try:
        await kube_sim.wait_for(lambda: _count(kube_sim, "watch", "deployments") >= 2,
                                timeout=10)
        assert mirror.synced.is_set()
    finally:
        await mirror.stop()
