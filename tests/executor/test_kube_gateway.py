"""The gateway's retry policy and errors, against the simulator's injected faults."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from receiver.kube import Kube, KubeError, Mirror, RetryPolicy
from tests.executor.conftest import FAST_RETRY, NS, STABLE


async def test_a_throttled_call_waits_as_long_as_retry_after_says_then_succeeds(
    kube_sim, kube_api
) -> None:
    kube_sim.faults.fail(verb="get", resource="deployments", status=429, times=1, retry_after=1)
    kube = Kube(kube_api, FAST_RETRY)
    with capture_logs() as logs:
        d = await kube.read_deployment(NS, STABLE)
    assert d["metadata"]["name"] == STABLE
    # FAST_RETRY's own backoff is milliseconds: the one retry waited the server's 1 s
    [retry] = [e for e in logs if e["event"] == "kube_retry"]
    assert retry["status"] == 429 and retry["delay"] >= 1
    assert len(kube_sim.requests.matching(method="GET", resource="deployments")) == 2


async def test_forbidden_is_not_retried_and_carries_the_api_servers_message(
    kube_sim, kube_api
) -> None:
    kube_sim.faults.fail(verb="patch", resource="deployments/scale", status=403, times=3)
    kube = Kube(kube_api, FAST_RETRY)
    with pytest.raises(KubeError) as info:
        await kube.scale_deployment(NS, STABLE, 5)
    assert info.value.status == 403 and not info.value.transient
    assert info.value.message == "simulated failure (403)"  # the Status message, verbatim
    assert "patch deployments/scale finance/finance-service-v1" in str(info.value)
    assert len(kube_sim.requests.matching(method="PATCH")) == 1


async def test_dropped_connections_and_server_errors_are_retried_until_an_answer(
    kube_sim, kube_api
) -> None:
    kube_sim.faults.drop_connections(times=2, verb="get", resource="deployments")
    kube_sim.faults.fail(verb="get", resource="deployments", status=503, times=2)
    kube = Kube(kube_api, FAST_RETRY)
    d = await kube.read_deployment(NS, STABLE)
    assert d["spec"]["replicas"] == 4


async def test_a_transient_failure_that_outlasts_the_budget_is_raised(kube_sim, kube_api) -> None:
    kube_sim.faults.fail(verb="get", resource="deployments", status=503)
    kube = Kube(kube_api, RetryPolicy(base_seconds=0.01, cap_seconds=0.02,
                                      give_up_after_seconds=0.2))
    with pytest.raises(KubeError) as info:
        await kube.read_deployment(NS, STABLE)
    assert info.value.status == 503 and info.value.transient


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(base_seconds=0.1, cap_seconds=1.0)
    delays = [policy.delay(10) for _ in range(200)]
    assert max(delays) <= 1.0 and min(delays) >= 0
    assert len({round(d, 6) for d in delays}) > 100  # full jitter, not lock-step
    assert 2.5 <= policy.delay(3, retry_after=2.5) <= 2.75  # Retry-After, plus jitter


async def test_a_mirror_follows_changes_across_an_expired_and_a_cut_watch(
    kube_sim, kube_api
) -> None:
    kube = Kube(kube_api, FAST_RETRY)
    mirror = Mirror(kube, "deployments", NS)
    mirror.start()
    try:
        await mirror.ready()
        kube_sim.faults.expire_next_watch()
        kube_sim.faults.cut_watches(after_events=1, times=2)
        for n in (5, 6, 7):
            kube_sim.scale_as(NS, STABLE, n, field_manager="kubectl")
        await kube_sim.wait_for(
            lambda: (mirror.get(STABLE) or {}).get("spec", {}).get("replicas") == 7, 5)
        assert mirror.rewatches + mirror.relists >= 2
    finally:
        await mirror.stop()
