"""Faults, races and crashes: the rollback still happens, once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from receiver.core.rollback import Phase
from receiver.kube import new_api_client
from receiver.metrics import KUBE_RETRIES
from receiver.records import ANN_LAST, history_from_lease
from tests.executor.conftest import CANARY, NS, STABLE, MakeExecutor, Seen, decision, make_config
from tests.executor.test_rollback import replicas, scale_patches


def retries() -> float:
    return sum(s.value for m in KUBE_RETRIES.collect() for s in m.samples
               if s.name.endswith("_total"))


async def test_api_faults_on_every_step_are_retried_and_the_rollback_completes(
    kube_sim, make_executor: MakeExecutor
) -> None:
    f = kube_sim.faults
    f.fail(verb="get", resource="leases", status=503, times=1)
    f.fail(verb="update", resource="leases", status=500, times=1)
    f.fail(verb="get", resource="deployments", status=500, times=2)
    f.fail(verb="patch", resource="deployments/scale", status=429, times=1, retry_after=0)
    f.fail(verb="patch", resource="deployments/scale", status=409, times=1)
    f.fail(verb="patch", resource="deployments/scale", status=503, times=1)
    f.fail(verb="list", resource="pods", status=503, times=1)
    f.fail(verb="watch", resource="pods", status=500, times=1)
    f.fail(verb="patch", resource="deployments", status=502, times=1)
    f.fail(verb="create", resource="events", status=503, times=1)
    f.drop_connections(times=2, verb="patch", resource="deployments/scale")
    before = retries()

    ex = make_executor()
    record = await ex.claim(decision(), make_config().targets[0])
    assert record is not None
    final = await ex.start(record)

    assert final.phase is Phase.SUCCEEDED, final.error
    assert replicas(kube_sim, CANARY) == 0 and replicas(kube_sim, STABLE) == 5
    assert retries() - before >= 8
    assert not [s for s in final.steps if s.warning and s.name == "record"]


async def test_a_forbidden_scale_ends_the_rollback_with_the_api_servers_message(
    kube_sim, make_executor: MakeExecutor
) -> None:
    kube_sim.faults.fail(verb="patch", resource="deployments/scale", status=403, times=1)
    ex = make_executor()
    final = await ex.start(await ex.claim(decision(), make_config().targets[0]))  # type: ignore[arg-type]
    assert final.phase is Phase.FAILED
    assert "403" in (final.error or "") and "deployments/scale" in (final.error or "")


async def test_watches_cut_and_expired_mid_verification_still_end_verified(
    kube_sim, make_executor: MakeExecutor
) -> None:
    kube_sim.faults.cut_watches(after_events=2, times=4)
    kube_sim.faults.expire_next_watch(count=2)
    ex = make_executor()
    final = await ex.start(await ex.claim(decision(), make_config().targets[0]))  # type: ignore[arg-type]
    assert final.phase is Phase.SUCCEEDED, final.error
    watches = kube_sim.requests.matching(verb="watch")
    assert len(watches) >= 4, "the cut and expired streams were resumed"
    assert final.progress.stable_ready == 5


async def test_two_receivers_racing_on_one_target_make_one_rollback(
    kube_sim, make_executor: MakeExecutor
) -> None:
    a, b = make_executor("receiver-a"), make_executor("receiver-b")
    target = make_config().targets[0]
    ra, rb = await asyncio.gather(a.claim(decision(), target), b.claim(decision(), target))
    claimed = [(ex, r) for ex, r in ((a, ra), (b, rb)) if r is not None]
    assert len(claimed) == 1
    ex, record = claimed[0]
    # the loser's repeat while it runs changes nothing either
    loser = b if ex is a else a
    assert await loser.claim(decision(), target) is None
    final = await ex.start(record)
    assert final.phase is Phase.SUCCEEDED
    assert len(scale_patches(kube_sim)) == 2


async def test_a_repeat_alert_while_the_rollback_runs_here_changes_nothing(
    kube_sim, make_executor: MakeExecutor
) -> None:
    ex = make_executor()
    target = make_config().targets[0]
    record = await ex.claim(decision(), target)
    assert record is not None
    assert await ex.claim(decision(), target) is None
    await ex.start(record)


@pytest.mark.parametrize("kill_after", ["claim", "preflight", "scale-canary", "scale-stable"])
async def test_a_receiver_killed_after_a_step_is_resumed_by_another_and_completes_once(
    kube_sim, kubeconfig_path, make_executor: MakeExecutor, kill_after: str
) -> None:
    api = await new_api_client(kubeconfig_path)
    seen = Seen()
    first = make_executor("receiver-a", api=api, on_change=seen)
    record = await first.claim(decision(), make_config().targets[0])
    assert record is not None
    if kill_after != "claim":
        reached = asyncio.Event()
        seen.hooks.append(lambda r, s: s is not None and s.name == kill_after and reached.set())
        task = first.start(record)
        await reached.wait()
        task.cancel()  # the pod is killed: no release, no more renewals
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        await first._held[record.target].stop()
        first._held.clear()
    await api.close()

    # another replica starts; its clock is past the dead holder's lease
    later = make_executor("receiver-b",
                          clock=lambda: datetime.now(UTC) + timedelta(seconds=10))
    tasks = await later.resume_unfinished()
    assert len(tasks) == 1
    final = await tasks[0]

    assert final.id == record.id and final.phase is Phase.SUCCEEDED, final.error
    assert any(s.name == "resume" for s in final.steps)
    assert replicas(kube_sim, CANARY) == 0 and replicas(kube_sim, STABLE) == 5
    for name in (CANARY, STABLE):
        assert len(scale_patches(kube_sim, name)) <= 2  # at most once each per receiver
    lease = kube_sim.get("leases", NS, "rollback-finance-service")
    assert lease["spec"]["holderIdentity"] in ("", None)
    assert lease["spec"]["leaseTransitions"] >= 1
    assert [r.id for r in history_from_lease(lease)] == [record.id]
    # nothing left to resume: it completed once
    assert await later.resume_unfinished() == []


async def test_a_live_holders_unfinished_rollback_is_not_taken_over(
    kube_sim, make_executor: MakeExecutor
) -> None:
    a = make_executor("receiver-a")
    record = await a.claim(decision(), make_config().targets[0])
    assert record is not None
    b = make_executor("receiver-b")
    assert await b.resume_unfinished() == []
    assert await b.claim(decision(), make_config().targets[0]) is None
    await a.start(record)


async def test_graceful_close_hands_an_unfinished_rollback_to_the_next_replica(
    kube_sim, make_executor: MakeExecutor
) -> None:
    seen = Seen()
    a = make_executor("receiver-a", on_change=seen)
    record = await a.claim(decision(), make_config().targets[0])
    assert record is not None
    reached = asyncio.Event()
    seen.hooks.append(lambda r, s: s is not None and s.name == "scale-canary" and reached.set())
    a.start(record)
    await reached.wait()
    await a.close(timeout=0)
    lease = kube_sim.get("leases", NS, "rollback-finance-service")
    assert lease["spec"]["holderIdentity"] in ("", None)

    b = make_executor("receiver-b")
    tasks = await b.resume_unfinished()  # no waiting for expiry: it was handed over
    assert len(tasks) == 1
    final = await tasks[0]
    assert final.id == record.id and final.phase is Phase.SUCCEEDED, final.error


async def test_a_receiver_that_loses_its_lease_stops_acting_at_once(
    kube_sim, make_executor: MakeExecutor
) -> None:
    from receiver.kube import micro_time

    kube_sim.set_pod_behavior(NS, STABLE, "never-ready")
    seen = Seen()
    a = make_executor("receiver-a", on_change=seen)
    record = await a.claim(decision(), make_config().targets[0])
    assert record is not None
    verifying = asyncio.Event()
    seen.hooks.append(lambda r, s: r.phase is Phase.VERIFYING and verifying.set())
    task = a.start(record)
    await verifying.wait()

    # an operator (or a replica with a skewed clock) takes the Lease over
    lease = await a.kube.read_lease(NS, "rollback-finance-service")
    lease["spec"].update(holderIdentity="intruder", renewTime=micro_time(),
                         leaseDurationSeconds=60)
    await a.kube.replace_lease(NS, "rollback-finance-service", lease)

    final = await asyncio.wait_for(task, 5)  # well before the 20 s verification timeout
    assert not final.phase.finished  # not declared failed: the new holder owns the outcome
    lease = kube_sim.get("leases", NS, "rollback-finance-service")
    assert lease["spec"]["holderIdentity"] == "intruder"  # not released over the new holder
    annotations = kube_sim.get("deployments", NS, STABLE)["metadata"].get("annotations") or {}
    assert ANN_LAST not in annotations  # no outcome recorded by the old holder


async def test_a_replica_with_an_outdated_view_of_the_lease_still_backs_off(
    kube_sim, make_executor: MakeExecutor
) -> None:
    a, b = make_executor("receiver-a"), make_executor("receiver-b")
    target = make_config().targets[0]
    done = await a.start(await a.claim(decision(), target))  # type: ignore[arg-type]
    assert done.phase is Phase.SUCCEEDED  # a last saw the Lease free
    held_by_b = await b.claim(decision(), target)
    assert held_by_b is not None
    assert await a.claim(decision(), target) is None  # its free copy is stale: 409, re-read
    assert kube_sim.get("leases", NS, "rollback-finance-service")["spec"][
        "holderIdentity"] == "receiver-b"
    await b.start(held_by_b)
