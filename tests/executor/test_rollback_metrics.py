"""Rollback counters: starts and outcomes are separate series a dashboard can divide."""

from __future__ import annotations

from receiver.domain.rollback import Phase
from receiver.metrics import Metrics
from tests.executor.conftest import MakeExecutor, decision, make_config

TARGET = "finance-service"


def counts(metrics: Metrics) -> tuple[float, float, float]:
    return (
        metrics.value("receiver_rollbacks_started_total", target=TARGET),
        metrics.value("receiver_rollbacks_finished_total", target=TARGET, outcome="succeeded"),
        metrics.value("receiver_rollbacks_finished_total", target=TARGET, outcome="failed"),
    )


async def test_a_succeeded_rollback_counts_one_start_and_one_succeeded_finish(
    kube_sim, make_executor: MakeExecutor, metrics: Metrics
) -> None:
    before = counts(metrics)
    ex = make_executor()
    record = await ex.claim(decision(), make_config().targets[0])
    assert record is not None
    final = await ex.start(record)
    assert final.phase is Phase.SUCCEEDED, final.error
    after = counts(metrics)
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 0]
    assert metrics.registry.get_sample_value(
        "receiver_rollback_duration_seconds_count", {"target": TARGET, "outcome": "succeeded"}
    )


async def test_a_failed_rollback_counts_one_start_and_one_failed_finish(
    kube_sim, make_executor: MakeExecutor, metrics: Metrics
) -> None:
    before = counts(metrics)
    cfg = make_config(target={"stable": "finance-service-v0"})
    ex = make_executor(config=cfg)
    record = await ex.claim(decision(), cfg.targets[0])
    assert record is not None
    final = await ex.start(record)
    assert final.phase is Phase.FAILED
    after = counts(metrics)
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 0, 1]


def test_the_old_event_labelled_counter_is_gone(metrics: Metrics) -> None:
    """One name per meaning: receiver_rollbacks_total{event} mixed starts with outcomes."""
    names = {m.name for m in metrics.registry.collect()}
    assert "receiver_rollbacks" not in names
    assert {"receiver_rollbacks_started", "receiver_rollbacks_finished"} <= names
