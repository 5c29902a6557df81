"""What a rollback leaves in the cluster: fights named, records any replica can read."""

from __future__ import annotations

import pytest

from receiver.domain.rollback import Phase
from receiver.kube.lease import RecordError
from receiver.kube.targets import TargetWatcher
from tests.executor.conftest import CANARY, NS, MakeExecutor, decision, make_config


async def test_a_gitops_revert_of_the_canary_is_reported_naming_its_field_manager(
    kube_sim, make_executor: MakeExecutor
) -> None:
    ex = make_executor()
    target = make_config().targets[0]
    first = await ex.start(await ex.claim(decision(), target))  # type: ignore[arg-type]
    assert first.phase is Phase.SUCCEEDED
    assert not any(s.name == "fight" for s in first.steps)

    kube_sim.scale_as(NS, CANARY, 1, field_manager="argocd-controller")
    second = await ex.start(await ex.claim(decision(), target))  # type: ignore[arg-type]

    fight = next(s for s in second.steps if s.name == "fight")
    assert fight.warning and "argocd-controller" in fight.message and first.id in fight.message
    assert ex.metrics.value("receiver_fights_detected_total",
                            target="finance-service", manager="argocd-controller") >= 1
    assert second.phase is Phase.SUCCEEDED


async def test_any_replica_lists_running_and_recent_rollbacks_from_the_cluster(
    kube_sim, make_executor: MakeExecutor
) -> None:
    a, b = make_executor("receiver-a"), make_executor("receiver-b")
    target = make_config().targets[0]
    done = await a.start(await a.claim(decision(), target))  # type: ignore[arg-type]
    running = await a.claim(decision("p95 latency 1.4 s > 1 s"), target)
    assert running is not None

    listed = await b.list_rollbacks()
    by_id = {r.id: r for r in listed}
    assert by_id[done.id].phase is Phase.SUCCEEDED and by_id[done.id].steps
    assert by_id[running.id].phase is Phase.STARTED
    assert listed[0].id == running.id  # newest first
    await a.start(running)


async def test_the_slack_thread_is_kept_in_the_record_for_a_restarted_receiver(
    kube_sim, make_executor: MakeExecutor
) -> None:
    a = make_executor("receiver-a")
    record = await a.claim(decision(), make_config().targets[0])
    assert record is not None
    await a.set_slack_thread(record.id, "C123", "1700000000.000100")
    final = await a.start(record)
    assert (final.slack_channel, final.slack_ts) == ("C123", "1700000000.000100")

    b = make_executor("receiver-b")
    seen = {r.id: r for r in await b.list_rollbacks()}
    assert seen[record.id].slack_ts == "1700000000.000100"
    await b.set_slack_thread(record.id, "C123", "1700000000.000200")  # from another replica
    seen = {r.id: r for r in await b.list_rollbacks()}
    assert seen[record.id].slack_ts == "1700000000.000200"


async def test_the_target_watcher_follows_replicas_and_running_rollbacks_without_reads(
    kube_sim, kube_api, make_executor: MakeExecutor
) -> None:
    cfg = make_config()
    watcher = TargetWatcher(kube_api, lambda: cfg)
    await watcher.start()
    try:
        await watcher.wait_synced(5)
        state = watcher.states()["finance-service"]
        assert (state.stable_exists, state.stable_replicas, state.canary_replicas) == (True, 4, 1)
        assert state.rollback_running is None

        ex = make_executor()
        record = await ex.claim(decision(), cfg.targets[0])
        assert record is not None
        await kube_sim.wait_for(
            lambda: watcher.states()["finance-service"].rollback_running == record.id, 5)
        # states() answers from the watches: called between awaits (as the web layer
        # does), it must neither read nor start new list/watch requests
        def reads() -> int:
            return len([r for r in kube_sim.requests if r.verb in ("get", "list", "watch")])

        before = reads()
        for _ in range(50):
            watcher.states()
        # a full round trip: anything states() started has had the loop long enough to be sent
        await ex.kube.read_deployment(NS, CANARY)
        assert reads() == before + 1
        final = await ex.start(record)
        await kube_sim.wait_for(
            lambda: watcher.states()["finance-service"].canary_replicas == 0
            and watcher.states()["finance-service"].rollback_running is None, 5)
        state = watcher.states()["finance-service"]
        assert state.stable_replicas == 5
        assert state.last_rollback_finished == final.finished_at
        assert len(state.recent_rollbacks) == 1
    finally:
        await watcher.stop()


async def test_a_slack_thread_recorded_while_another_writer_changes_the_lease_is_kept(
    kube_sim, make_executor: MakeExecutor
) -> None:
    a = make_executor("receiver-a")
    record = await a.start(await a.claim(decision(), make_config().targets[0]))  # type: ignore[arg-type]
    b = make_executor("receiver-b")
    kube_sim.faults.fail("update", "leases", status=409, times=2)  # two lost races in a row

    await b.set_slack_thread(record.id, "C123", "1700000000.000300")

    seen = {r.id: r for r in await b.list_rollbacks()}
    assert seen[record.id].slack_ts == "1700000000.000300"


async def test_a_lease_that_keeps_changing_under_a_write_is_reported_not_overwritten(
    kube_sim, make_executor: MakeExecutor
) -> None:
    a = make_executor("receiver-a")
    record = await a.start(await a.claim(decision(), make_config().targets[0]))  # type: ignore[arg-type]
    b = make_executor("receiver-b")
    kube_sim.faults.fail("update", "leases", status=409)  # every write loses

    with pytest.raises(RecordError, match="kept changing"):
        await b.set_slack_thread(record.id, "C123", "1700000000.000400")

    assert {r.id: r for r in await b.list_rollbacks()}[record.id].slack_ts is None
