"""RecoveryWatcher's bookkeeping without Prometheus: which rollbacks it watches, and what a
record left ``watching`` by a stopped receiver becomes (the e2e tests cover real answers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from receiver.domain.rollback import Phase, Recovery, RecoveryOutcome, RollbackRecord, Step
from receiver.domain.settings import parse_config
from receiver.metrics import Metrics
from receiver.prometheus.errors import PrometheusUnavailable
from receiver.prometheus.results import QueryResult
from receiver.rollback.recovery import RecoveryWatcher

NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
CONFIG = parse_config("""
rules: [{name: error-rate, matchers: ['alertname="HighErrorRate"'], threshold: 0.05, unit: ratio}]
targets: [{name: finance-service, namespace: finance, matchers: ['service="finance-service"'],
           stable: finance-service-v1, canary: finance-service-v2, replicas: 5}]
prometheus: {url: "http://prometheus:9090"}
""")


class Down:
    async def query(self, expr: str, *, wait: float, at: float | None = None) -> QueryResult:
        raise PrometheusUnavailable("no answer from Prometheus within 2 s", attempts=3)


def record(finished: datetime, **changes: object) -> RollbackRecord:
    base = RollbackRecord("r1", "finance-service", "finance", "finance-service-v1", "finance-service-v2", 5,
                          Phase.SUCCEEDED, finished - timedelta(seconds=30), "alert", "why", rule="error-rate",
                          alertname="HighErrorRate", finished_at=finished,
                          recovery=Recovery(RecoveryOutcome.WATCHING, "", finished - timedelta(minutes=3), 300.0))
    return replace(base, **changes)  # type: ignore[arg-type]


async def until(check: Callable[[], bool]) -> None:
    for _ in range(500):  # bounded: the settle task runs at once (its deadline is past)
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not settled")


def watcher(saved: list[RollbackRecord], told: list[tuple[RollbackRecord, Step | None]],
            *, already_settled: bool = False) -> RecoveryWatcher:
    async def save(r: RollbackRecord) -> bool:
        saved.append(r)
        return not already_settled

    return RecoveryWatcher(Down(), lambda: CONFIG, lambda r, s: told.append((r, s)), save,
                           metrics=Metrics.create(), clock=lambda: NOW)


async def test_a_record_left_watching_past_its_deadline_is_settled_as_unknown_and_told() -> None:
    saved: list[RollbackRecord] = []
    told: list[tuple[RollbackRecord, Step | None]] = []
    w = watcher(saved, told)
    await w.settle_abandoned([record(NOW - timedelta(minutes=30))])
    await until(lambda: bool(saved))
    assert saved[0].recovery is not None and saved[0].recovery.outcome is RecoveryOutcome.UNKNOWN
    assert saved[0].recovery.message == (
        "unknown: the receiver watching the recovery stopped before the window ended")
    assert told and told[0][1] is not None and told[0][1].name == "recovery"
    assert w.metrics.value("receiver_recovery_total", target="finance-service", outcome="unknown") == 1


async def test_an_outcome_another_replica_already_recorded_is_not_told_twice() -> None:
    saved: list[RollbackRecord] = []
    told: list[tuple[RollbackRecord, Step | None]] = []
    w = watcher(saved, told, already_settled=True)
    await w.settle_abandoned([record(NOW - timedelta(minutes=30))])
    await until(lambda: bool(saved))
    assert saved and not told


async def test_only_verified_alert_rollbacks_with_prometheus_are_watched() -> None:
    w = watcher([], [])
    assert w.watch(record(NOW, phase=Phase.FAILED)) is None
    assert w.watch(record(NOW, recovery=None)) is None  # manual, or Prometheus was not configured
    assert w.watch(record(NOW, dry_run=True)) is None
    task = w.watch(record(NOW))
    assert task is not None
    assert w.watch(record(NOW)) is None  # one watch per rollback, however often it changes
    await w.close()
