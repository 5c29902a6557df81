"""Retry-After is a floor with jitter: 0 never turns into a tight loop."""

from __future__ import annotations

import itertools

from kubernetes_asyncio.client import ApiClient

from receiver.kube import Kube, RetryPolicy
from sim.kube import KubeSim
from tests.executor.conftest import NS, STABLE


async def test_a_429_saying_retry_after_0_is_retried_no_faster_than_the_base_backoff(
    kube_sim: KubeSim, kube_api: ApiClient,
) -> None:
    kube_sim.faults.fail(verb="get", resource="deployments", status=429, times=4, retry_after=0)
    kube = Kube(kube_api, RetryPolicy(base_seconds=0.05, cap_seconds=0.5,
                                      give_up_after_seconds=10))
    d = await kube.read_deployment(NS, STABLE)
    assert d["metadata"]["name"] == STABLE
    gets = [r.received for r in kube_sim.requests
            if r.verb == "get" and r.resource == "deployments"]
    assert len(gets) == 5
    gaps = [b - a for a, b in itertools.pairwise(gets)]
    assert min(gaps) >= 0.05
    assert len({round(g, 4) for g in gaps}) > 1  # jittered, not in lock-step


def test_every_client_told_the_same_retry_after_comes_back_at_a_different_moment() -> None:
    policy = RetryPolicy(base_seconds=0.1)
    delays = [policy.delay(0, retry_after=1.0) for _ in range(50)]
    assert min(delays) >= 1.0 and max(delays) <= 1.1
    assert len({round(d, 6) for d in delays}) > 40
