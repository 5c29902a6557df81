"""The one place that sequences I/O: intake -> decide -> record intent -> execute -> notify.

Ports are Protocols so a unit test can drive the service with plain fakes while the
integration tests use the real executor against the simulator.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

import structlog

from receiver.config import Config, Target
from receiver.core.alerts import WebhookPayload
from receiver.core.decisions import Decision, DecisionKind, TargetState, decide
from receiver.core.rollback import RollbackRecord
from receiver.metrics import ALERTS, DECISIONS

log = structlog.get_logger(__name__)

#: Decisions that people are told about in Slack (the rest are silent no-ops).
NOTIFIED = frozenset({DecisionKind.MUTED, DecisionKind.DRY_RUN, DecisionKind.HALTED, DecisionKind.RESOLVED})
#: Decisions that change nothing and tell no one: a repeat of the same body may reuse them.
QUIET = frozenset(
    {DecisionKind.ALREADY_ROLLED_BACK, DecisionKind.IN_PROGRESS, DecisionKind.NO_RULE_MATCHED, DecisionKind.DISABLED}
)


ALREADY_CLAIMED = "a rollback of this target is already running (another delivery or replica holds its lease)"


class StatesPort(Protocol):
    def states(self) -> dict[str, TargetState]: ...


class ExecutorPort(Protocol):
    async def claim(self, decision: Decision, target: Target) -> RollbackRecord | None: ...
    def start(self, record: RollbackRecord) -> asyncio.Task[RollbackRecord]: ...


class NotifierPort(Protocol):
    def decision(self, decision: Decision, target: Target, record: RollbackRecord | None = None) -> None: ...


class IntentNotRecorded(Exception):
    """A roll-back decision whose intent could not be written to the cluster (answer 503)."""

    def __init__(self, message: str, decisions: list[Decision]) -> None:
        super().__init__(message)
        self.decisions = decisions


@dataclass(frozen=True)
class WebhookResult:
    decisions: list[Decision]
    records: list[RollbackRecord]

    @cached_property
    def response_body(self) -> bytes:
        """The JSON answer, serialised once (a repeated delivery reuses it)."""
        return json.dumps(
            {
                "status": "ok",
                "decisions": [d.summary() for d in self.decisions],
                "rollbacks": [r.id for r in self.records],
            }
        ).encode()


@dataclass(frozen=True)
class _Repeat:
    config: Config
    states: dict[str, TargetState]
    result: WebhookResult
    counters: tuple[tuple[Any, Any, int], ...]  # (decision counter, alert counter, alerts) per decision


def alert_reason(d: Decision) -> str:
    """A bounded label for why the alerts got their decision (the typed cause from decide)."""
    return d.details.get("why") or d.kind.value


def body_digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=16).digest()


class Service:
    """Turns one webhook delivery into decisions and started rollbacks."""

    def __init__(
        self,
        config: Callable[[], Config],
        states: StatesPort,
        executor: ExecutorPort,
        notifier: NotifierPort,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._states = states
        self._executor = executor
        self._notifier = notifier
        self._clock = clock
        self._told: OrderedDict[tuple[str, str, frozenset[str]], None] = OrderedDict()
        self._last_record: dict[str, RollbackRecord] = {}
        self._repeats: OrderedDict[bytes, _Repeat] = OrderedDict()

    def repeat(self, body: bytes) -> WebhookResult | None:
        """The result for a byte-identical delivery whose inputs have not changed, else None.

        Alertmanager re-sends the same group every group_interval and repeat_interval,
        byte for byte, and the common answer is "already rolled back". decide() is pure,
        so the same body, config and target states give the same decisions; only quiet
        decisions (no claim, no notification) are reused, and they do not depend on the
        clock (mute expiry and the fight window only move decisions out of QUIET).
        """
        key = body_digest(body)
        entry = self._repeats.get(key)
        if entry is None:
            return None
        if entry.config is not self._config() or entry.states != self._states.states():
            del self._repeats[key]
            return None
        for decisions, alerts, n in entry.counters:  # repeats are counted, not logged
            decisions.inc()
            alerts.inc(n)
        return entry.result

    def remember(self, record: RollbackRecord) -> None:
        """Keep the latest rollback per target, so a later 'resolved' can reply in its thread."""
        self._last_record[record.target] = record

    async def handle(self, payload: WebhookPayload, body: bytes | None = None) -> WebhookResult:
        config = self._config()
        states = self._states.states()
        decisions = decide(payload, config, states, self._clock())
        records: list[RollbackRecord] = []
        failures: list[str] = []
        final: list[Decision] = []
        for d in decisions:
            target = config.target(d.target)
            assert target is not None  # decide only names configured targets
            bound = log.bind(target=d.target, fingerprints=list(d.fingerprints), decision=d.kind.value)
            if d.kind is DecisionKind.ROLL_BACK:
                try:
                    record = await self._executor.claim(d, target)
                except Exception as e:
                    bound.error("could not record rollback intent; Alertmanager will retry", error=str(e))
                    failures.append(f"{d.target}: {e}")
                    final.append(d)
                    continue
                if record is None:
                    d = replace(d, kind=DecisionKind.IN_PROGRESS, reason=ALREADY_CLAIMED)
                else:
                    bound = bound.bind(rollback_id=record.id)
                    self.remember(record)
                    self._executor.start(record)
                    records.append(record)
            bound.info("decided", reason=d.reason, rule=d.rule)
            DECISIONS.labels(d.target, d.kind.value).inc()
            ALERTS.labels(d.kind.value, alert_reason(d)).inc(len(d.alerts))
            if d.kind in NOTIFIED and self._first_time(d):
                self._notifier.decision(d, target, self._last_record.get(d.target))
            final.append(d)
        if failures:
            raise IntentNotRecorded("; ".join(failures), final)
        result = WebhookResult(final, records)
        if body is not None and all(d.kind in QUIET for d in final):
            counters = tuple(
                (DECISIONS.labels(d.target, d.kind.value), ALERTS.labels(d.kind.value, alert_reason(d)), len(d.alerts))
                for d in final
            )
            self._repeats[body_digest(body)] = _Repeat(config, states, result, counters)
            if len(self._repeats) > 1024:
                self._repeats.popitem(last=False)
        return result

    def _first_time(self, d: Decision) -> bool:
        """Repeats of the same alerts with the same decision post nothing new."""
        key = (d.target, d.kind.value, frozenset(d.fingerprints))
        if key in self._told:
            self._told.move_to_end(key)
            return False
        self._told[key] = None
        if len(self._told) > 4096:
            self._told.popitem(last=False)
        return True
