"""Two claims for one target in one process: one rollback, and the Lease released after."""

from __future__ import annotations

import asyncio

import pytest

from receiver.kube.lease import holder, record_from_lease
from sim.kube import KubeSim
from tests.executor.conftest import CANARY, NS, STABLE, MakeExecutor, Seen, decision, make_config

LEASE = "rollback-finance-service"


def _scale_patches(sim: KubeSim, name: str) -> int:
    return sum(1 for r in sim.requests
               if r.verb == "patch" and r.resource == "deployments/scale" and r.name == name)


async def test_a_second_claim_while_the_first_reads_gets_nothing_and_the_lease_ends_released(
    kube_sim: KubeSim, make_executor: MakeExecutor,
) -> None:
    cfg = make_config()
    seen = Seen()
    ex = make_executor(config=cfg, on_change=seen)
    target = cfg.targets[0]
    slow = kube_sim.faults.latency(0.3, verb="get", resource="deployments")
    first = asyncio.create_task(ex.claim(decision("first group"), target))
    # the first claim's Lease write has landed; its Deployment reads are still pending
    await kube_sim.wait_for(lambda: holder(kube_sim.get("leases", NS, LEASE)) == "receiver-a")
    second = asyncio.create_task(ex.claim(decision("second group"), target))
    claimed, again = await first, await second
    kube_sim.faults.latencies.remove(slow)

    assert claimed is not None
    assert again is None
    done = await ex.start(claimed)
    assert done.phase.value == "succeeded", done.error
    assert _scale_patches(kube_sim, STABLE) == 1
    assert _scale_patches(kube_sim, CANARY) == 1
    assert [r.id for r in await ex.list_rollbacks()] == [claimed.id]
    assert len([s for s in seen.steps if s.name == "preflight"]) == 1

    lease = kube_sim.get("leases", NS, LEASE)
    assert holder(lease) == ""
    finished = record_from_lease(lease)
    assert finished is not None and finished.phase.finished
    # renewals run every lease_duration/3 = 1 s: nothing may take the Lease back
    with pytest.raises(TimeoutError):
        await kube_sim.wait_for(lambda: holder(kube_sim.get("leases", NS, LEASE)) != "",
                                timeout=1.5)
