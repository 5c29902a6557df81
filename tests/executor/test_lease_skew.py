"""Lease expiry by client-go's rule: local time since the Lease was last seen to change.

A holder's renewTime comes from the holder's clock; a replica must never judge expiry by
comparing it with its own clock, or a skew larger than the lease duration makes two
replicas run one target's rollback (or none take over a dead one for as long as the skew).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver.domain.rollback import Phase
from receiver.kube.lease import LeaseObservations, holder
from receiver.kube.targets import TargetWatcher
from tests.executor.conftest import CANARY, NS, STABLE, MakeExecutor, Ticks, decision, make_config
from tests.executor.test_rollback import replicas

LEASE = "rollback-finance-service"
DURATION = 3  # make_config's lease_duration_seconds
SKEWS = pytest.mark.parametrize("skew_hours", [-1, 1], ids=["clock-behind", "clock-ahead"])


def skewed(hours: int):  # type: ignore[no-untyped-def]
    return lambda: datetime.now(UTC) + timedelta(hours=hours)


def resource_version(sim) -> str:  # type: ignore[no-untyped-def]
    return str(sim.get("leases", NS, LEASE)["metadata"]["resourceVersion"])


@SKEWS
async def test_a_holder_with_a_skewed_clock_that_keeps_renewing_is_never_taken_over(
    kube_sim, make_executor: MakeExecutor, skew_hours: int
) -> None:
    target = make_config().targets[0]
    a = make_executor("receiver-a", clock=skewed(skew_hours))
    record = await a.claim(decision(), target)  # claimed and renewed every second, not run
    assert record is not None
    ticks = Ticks()
    b = make_executor("receiver-b", observations=LeaseObservations(ticks))
    for _ in range(3):  # b's own time moves 2.7 lease durations while a renews
        assert await b.resume_unfinished() == []
        assert await b.claim(decision(), target) is None
        rv = resource_version(kube_sim)
        await kube_sim.wait_for(lambda rv=rv: resource_version(kube_sim) != rv, 3)  # a renewal
        ticks.advance(DURATION * 0.9)
    assert await b.resume_unfinished() == []
    assert await b.claim(decision(), target) is None
    assert holder(kube_sim.get("leases", NS, LEASE)) == "receiver-a"
    assert replicas(kube_sim, CANARY) == 1  # nobody ran the rollback a holds
    final = await a.start(record)
    assert final.phase is Phase.SUCCEEDED, final.error


@SKEWS
async def test_a_skewed_holder_that_stops_renewing_is_taken_over_after_one_lease_duration(
    kube_sim, kube_api, make_executor: MakeExecutor, skew_hours: int
) -> None:
    cfg = make_config()
    a = make_executor("receiver-a", clock=skewed(skew_hours))
    record = await a.claim(decision(), cfg.targets[0])
    assert record is not None
    await a._held[record.target].stop()  # the pod dies: no release, no more renewals
    a._held.clear()

    ticks = Ticks()
    seen = LeaseObservations(ticks)  # shared by both, as `receiver serve` does
    b = make_executor("receiver-b", observations=seen)
    watcher = TargetWatcher(kube_api, lambda: cfg, identity="receiver-b", observations=seen)
    await watcher.start()
    try:
        await watcher.wait_synced(5)
        assert watcher.orphaned() == []  # first seen just now: valid for a lease duration
        assert watcher.states()["finance-service"].rollback_running == record.id
        assert await b.resume_unfinished() == []
        ticks.advance(DURATION - 0.1)
        assert watcher.orphaned() == []
        assert await b.resume_unfinished() == []
        ticks.advance(0.1)
        assert watcher.orphaned() == ["finance-service"]
        assert watcher.states()["finance-service"].rollback_running is None
        tasks = await b.resume_unfinished()
        assert len(tasks) == 1
        final = await tasks[0]
    finally:
        await watcher.stop()
    assert final.id == record.id and final.phase is Phase.SUCCEEDED, final.error
    assert any(s.name == "resume" for s in final.steps)
    assert replicas(kube_sim, CANARY) == 0 and replicas(kube_sim, STABLE) == 5


async def test_a_released_lease_is_taken_at_once_by_a_replica_that_never_saw_it(
    kube_sim, make_executor: MakeExecutor
) -> None:
    target = make_config().targets[0]
    a = make_executor("receiver-a", clock=skewed(1))
    done = await a.start(await a.claim(decision(), target))  # type: ignore[arg-type]
    assert done.phase is Phase.SUCCEEDED and holder(kube_sim.get("leases", NS, LEASE)) == ""
    b = make_executor("receiver-b", observations=LeaseObservations(Ticks()))
    second = await b.claim(decision(), target)
    assert second is not None and holder(kube_sim.get("leases", NS, LEASE)) == "receiver-b"
    await b.start(second)
