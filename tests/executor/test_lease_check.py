"""The steps check they still hold the target's Lease before each change to the cluster.

A replica whose Lease another replica took must not scale anything: the new holder runs
the rollback, and two replicas scaling one target fight each other.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes_asyncio.client import ApiClient

from receiver.domain.rollback import Phase, RollbackRecord
from receiver.kube import Kube
from receiver.kube.lease import LeaseLost, holder, try_acquire
from receiver.rollback.executor import new_record
from receiver.rollback.steps import Run, RunContext
from receiver.rollback.verify import NamespaceWatches
from tests.executor.conftest import (
    CANARY,
    NS,
    STABLE,
    MakeExecutor,
    Seen,
    decision,
    make_config,
)
from tests.executor.test_rollback import replicas, scale_patches

LEASE = "rollback-finance-service"


async def test_a_replica_whose_lease_was_taken_before_its_rollback_started_scales_nothing(
    kube_sim, kube_api: ApiClient, make_executor: MakeExecutor
) -> None:
    a = make_executor("receiver-a")
    claimed = await a.claim(decision(), make_config().targets[0])
    assert claimed is not None
    # another replica takes the Lease over (as it does once it judged receiver-a dead)
    lease = kube_sim.get("leases", NS, LEASE)
    await Kube(kube_api).replace_lease(
        NS, LEASE, {**lease, "spec": {**lease["spec"], "holderIdentity": "receiver-b"}})
    # receiver-a learns it when it next writes the Lease (here: the Slack thread's ts)
    with pytest.raises(LeaseLost):
        await a.set_slack_thread(claimed.id, "C0ROLLBACK", "1700000000.000100")
    canary, stable = replicas(kube_sim, CANARY), replicas(kube_sim, STABLE)

    done = await a.start(claimed)

    assert scale_patches(kube_sim) == []
    assert (replicas(kube_sim, CANARY), replicas(kube_sim, STABLE)) == (canary, stable)
    assert not done.phase.finished and done.phase is not Phase.FAILED
    assert holder(kube_sim.get("leases", NS, LEASE)) == "receiver-b"


async def test_the_steps_of_a_replica_that_lost_its_lease_to_another_scale_nothing(
    kube_sim, kube_api: ApiClient
) -> None:
    """The steps' own check, without the executor racing them against the lost Lease."""
    config, kube = make_config(), Kube(kube_api)
    target = config.targets[0]
    fresh = new_record(decision(), target, config, datetime.now(UTC))

    def choose(_lease: object) -> RollbackRecord:
        return fresh

    held, _ = await try_acquire(kube, NS, LEASE, target.name, "receiver-a", 3,
                                lambda: datetime.now(UTC), choose)
    assert held is not None
    lease = kube_sim.get("leases", NS, LEASE)
    await kube.replace_lease(
        NS, LEASE, {**lease, "spec": {**lease["spec"], "holderIdentity": "receiver-b"}})
    with pytest.raises(LeaseLost):
        await held.flush()
    canary, stable = replicas(kube_sim, CANARY), replicas(kube_sim, STABLE)
    watches = NamespaceWatches(kube)
    context = RunContext(kube=kube, watches=watches, identity="receiver-a", on_change=Seen(),
                         clock=lambda: datetime.now(UTC))
    run = Run(context, config=config, target=target, record=fresh, held=held)

    try:
        with pytest.raises(LeaseLost):
            await run.execute()
    finally:
        await watches.close()

    assert scale_patches(kube_sim) == []
    assert (replicas(kube_sim, CANARY), replicas(kube_sim, STABLE)) == (canary, stable)
    assert holder(kube_sim.get("leases", NS, LEASE)) == "receiver-b"
