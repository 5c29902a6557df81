"""After a verified rollback: did taking the canary out help? (runbook step 4).

RecoveryWatcher re-queries Prometheus for the metric that triggered the rollback: the
alert's own expression (from its generatorURL), split into value and threshold, with
its value evaluated for the stable version (``for_version``: the rule's version matcher
rewritten, or the result filtered on the version label). Per version, not the service
as a whole, because only the stable serves now and a stale canary series (its rate
window still draining) must not read as "still sick".

It polls every ``window / 10`` seconds (between 0.5 and 15 s) for up to twice the
recovery window after the rollback finished (the alert's rate window needs time to
drain), and records the outcome once: on the record (so in the Lease, for GET
/rollbacks) and as a step of the rollback (its Slack thread; NOT recovered is
broadcast with the on-call mention). Prometheus failures are retried by the client
with backoff within each poll; they never end the watch early nor crash it.

A restart mid-window does not resume the watch: the record stays ``watching`` and the
receiver that starts next settles it as "unknown" once its deadline has passed
(``settle_abandoned``), so the outcome is never silently missing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from receiver.domain.canary_check import JUDGED_OPS
from receiver.domain.messages import duration
from receiver.domain.promql import PromQLError, expr_from_generator_url, for_version, split_threshold
from receiver.domain.readings import judge
from receiver.domain.recovery import RecoveryTracker
from receiver.domain.rollback import OnChange, Phase, Recovery, RecoveryOutcome, RollbackRecord, Step
from receiver.domain.settings import Config
from receiver.domain.units import format_value
from receiver.metrics import Metrics
from receiver.prometheus.errors import PrometheusError
from receiver.prometheus.results import QueryResult

log = structlog.get_logger(__name__)

#: How long after its deadline a record still ``watching`` counts as abandoned.
ABANDONED_AFTER = timedelta(seconds=60)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def poll_interval(window: float) -> float:
    return min(15.0, max(0.5, window / 10))


def deadline_of(record: RollbackRecord, window: float) -> datetime:
    return (record.finished_at or record.started_at) + timedelta(seconds=2 * window)


class Querier(Protocol):
    """What the watcher needs of PrometheusClient."""

    async def query(self, expr: str, *, wait: float, at: float | None = None) -> QueryResult: ...


#: Writes the record's recovery to the cluster; False when it was settled already (by another replica).
Save = Callable[[RollbackRecord], Awaitable[bool]]


class RecoveryWatcher:
    """One background task per verified rollback; ``close`` cancels them."""

    def __init__(
        self,
        client: Querier,
        config_provider: Callable[[], Config],
        on_change: OnChange,
        save: Save,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.client = client
        self.config_provider = config_provider
        self.on_change = on_change
        self.save = save
        self.metrics = metrics or Metrics.create()
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[Recovery | None]] = {}
        self._done: set[str] = set()  # ids settled here: a later change of the old record starts nothing

    def wants(self, record: RollbackRecord) -> bool:
        """A verified rollback whose recovery is still to be watched, not yet watched here."""
        return (record.phase is Phase.SUCCEEDED and not record.dry_run and record.recovery is not None
                and record.recovery.outcome is RecoveryOutcome.WATCHING and record.id not in self._tasks
                and record.id not in self._done)

    def watch(self, record: RollbackRecord) -> asyncio.Task[Recovery | None] | None:
        if not self.wants(record):
            return None
        task = asyncio.create_task(self._watch(record), name=f"recovery {record.id}")
        self._tasks[record.id] = task
        return task

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _finish(self, record: RollbackRecord, recovery: Recovery, after: float | None = None) -> None:
        done = replace(record, recovery=recovery)
        ok = recovery.outcome is RecoveryOutcome.RECOVERED
        self._done.add(record.id)
        try:
            if not await self.save(done):
                log.info("recovery_settled_elsewhere", rollback_id=record.id)
                return
        except Exception as e:  # the Slack thread and the metric still say it
            log.error("recovery_not_recorded", rollback_id=record.id, error=str(e))
        self.metrics.recoveries.labels(record.target, recovery.outcome.value).inc()
        if after is not None:
            self.metrics.alert_to_recovered.observe(after)
        log.info("recovery_checked", rollback_id=record.id, target=record.target,
                 outcome=recovery.outcome.value, message=recovery.message)
        self.on_change(done, Step("recovery", recovery.message, self.clock(), ok=ok,
                                  warning=recovery.outcome is RecoveryOutcome.UNKNOWN))

    async def _watch(self, record: RollbackRecord) -> Recovery | None:
        try:
            return await self._watch_unguarded(record)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never a crash: say it
            log.exception("recovery_watch_crashed", rollback_id=record.id)
            rec = Recovery(RecoveryOutcome.UNKNOWN, f"unknown: the watch failed: {type(e).__name__}: {e}",
                           record.recovery.alert_started_at if record.recovery else None, checked_at=self.clock())
            await self._finish(record, rec)
            return rec
        finally:
            self._tasks.pop(record.id, None)

    async def _watch_unguarded(self, record: RollbackRecord) -> Recovery | None:
        config = self.config_provider()
        target = config.target(record.target)
        assert record.recovery is not None
        started = record.recovery.alert_started_at
        if target is None or config.prometheus is None:
            why = "the target is no longer configured" if target is None else "prometheus is no longer configured"
            rec = Recovery(RecoveryOutcome.UNKNOWN, f"unknown: {why}", started, checked_at=self.clock())
            await self._finish(record, rec)
            return rec
        window = record.recovery.window_seconds or config.recovery_window(target, record.rule)
        subject = record.alertname or record.rule or "the alert's metric"
        tracker = RecoveryTracker(subject, target.stable, record.unit, window, started)
        try:
            split = split_threshold(expr_from_generator_url(record.generator_url or ""))
            if split is None:
                raise PromQLError("the alert's expression is not of the form <value> > <number>")
            if split.op not in JUDGED_OPS:
                raise PromQLError(f"the alert's expression compares with {split.op!r}: no direction to judge")
            expr = for_version(split.value, target.versions.stable, label=target.versions.label)
        except PromQLError as e:
            rec = Recovery(RecoveryOutcome.UNKNOWN, f"unknown: cannot watch {subject}: {e}", started,
                           window, checked_at=self.clock())
            await self._finish(record, rec)
            return rec
        interval = poll_interval(window)
        deadline = deadline_of(record, window)
        self.on_change(record, Step(
            "recovery-watch", f"watching {subject} on {target.stable} in Prometheus until it stays "
            f"{'under' if split.op.startswith('>') else 'over'} {format_value(split.threshold, record.unit)} "
            f"for {duration(window)}", self.clock()))
        loop = asyncio.get_running_loop()
        while True:
            tick = loop.time()
            now = self.clock()
            if now >= deadline:
                rec = tracker.conclude(now)
                await self._finish(record, rec)
                return rec
            try:
                result = await self.client.query(expr, wait=max(interval, 2.0))
            except PrometheusError as e:
                tracker.failed(e.reason)
            else:
                done = tracker.observe(judge([s.value for s in result.samples], split.threshold, split.op),
                                       self.clock())
                if done is not None:
                    await self._finish(record, done, tracker.recovered_after())
                    return done
            await asyncio.sleep(max(0.0, interval - (loop.time() - tick)))

    async def settle_abandoned(self, records: list[RollbackRecord]) -> None:
        """Records left ``watching`` by a receiver that stopped: "unknown" once their deadline passed.

        A live replica watching one finishes it before its deadline; whatever is still
        watching ABANDONED_AFTER later has nobody watching it.
        """
        config = self.config_provider()
        for record in records:
            if not self.wants(record):
                continue
            target = config.target(record.target)
            assert record.recovery is not None
            window = record.recovery.window_seconds or (
                config.recovery_window(target, record.rule) if target else config.settings.recovery_window_seconds)
            wait = (deadline_of(record, window) + ABANDONED_AFTER - self.clock()).total_seconds()
            self._tasks[record.id] = asyncio.create_task(self._settle(record, max(0.0, wait)),
                                                         name=f"recovery-settle {record.id}")

    async def _settle(self, record: RollbackRecord, wait: float) -> Recovery | None:
        try:
            await asyncio.sleep(wait)
            assert record.recovery is not None
            rec = Recovery(RecoveryOutcome.UNKNOWN,
                           "unknown: the receiver watching the recovery stopped before the window ended",
                           record.recovery.alert_started_at, record.recovery.window_seconds,
                           checked_at=self.clock())
            await self._finish(record, rec)
            return rec
        finally:
            self._tasks.pop(record.id, None)
