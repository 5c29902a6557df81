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
from typing import Any, Protocol, runtime_checkable

import structlog

from receiver.domain.alerts import WebhookPayload
from receiver.domain.decisions import Decision, DecisionKind, TargetState, decide
from receiver.domain.rollback import RollbackRecord
from receiver.domain.settings import Config, Target
from receiver.metrics import Metrics

log = structlog.get_logger(__name__)

#: Decisions that people are told about in Slack (the rest are silent no-ops).
NOTIFIED = frozenset({DecisionKind.MUTED, DecisionKind.DRY_RUN, DecisionKind.HALTED, DecisionKind.RESOLVED,
                      DecisionKind.MISCONFIGURED, DecisionKind.WARNED})
#: Decisions that change nothing and tell no one: a repeat of the same body may reuse them.
QUIET = frozenset(
    {DecisionKind.ALREADY_ROLLED_BACK, DecisionKind.IN_PROGRESS, DecisionKind.NO_RULE_MATCHED, DecisionKind.DISABLED}
)
#: Decisions a lagging watch could produce wrongly: confirmed against the API before the
#: answer (a 2xx is never retried, so a stale "already rolled back" would lose the alert).
CONFIRMED = frozenset({DecisionKind.ALREADY_ROLLED_BACK, DecisionKind.IN_PROGRESS, DecisionKind.MISCONFIGURED})

#: Byte budget of the repeat cache (answers kept for byte-identical re-sends). Each entry
#: keeps the serialised answer and the target states, never the parsed payload.
REPEAT_CACHE_BYTES = 8 * 1024 * 1024
#: Byte budget of the "already told in Slack" memory: fixed-size entries (a digest of the
#: alert fingerprints, not the fingerprints), so 4096 of them stay under ~1 MiB.
TOLD_CACHE_BYTES = 1024 * 1024
_TOLD_ENTRY_BYTES = 256  # tuple, two short strings and a 16-byte digest, as counted by sys.getsizeof
_ENTRY_OVERHEAD = 512  # per repeat entry: key, dataclass, the states dict


ALREADY_CLAIMED = "a rollback of this target is already running (another delivery or replica holds its lease)"


class StatesPort(Protocol):
    def states(self) -> dict[str, TargetState]: ...


@runtime_checkable
class ConfirmingStates(Protocol):
    """A states port that can also read targets from the API (TargetWatcher)."""

    def states(self) -> dict[str, TargetState]: ...
    async def confirm(self, names: list[str]) -> dict[str, TargetState]: ...
    def misconfigured(self) -> dict[str, str]: ...


class ExecutorPort(Protocol):
    async def claim(self, decision: Decision, target: Target) -> RollbackRecord | None: ...
    def start(self, record: RollbackRecord) -> asyncio.Task[RollbackRecord]: ...


class NotifierPort(Protocol):
    def decision(self, decision: Decision, target: Target, record: RollbackRecord | None = None) -> None: ...


class RetryLater(Exception):
    """The webhook must be answered 503 so Alertmanager sends it again."""

    def __init__(self, message: str, decisions: list[Decision]) -> None:
        super().__init__(message)
        self.decisions = decisions


class IntentNotRecorded(RetryLater):
    """A roll-back decision whose intent could not be written to the cluster (answer 503)."""


class Misconfigured(RetryLater):
    """A target's Deployment does not exist: 503, so the alert is delivered again and
    rolls back as soon as config.yaml (or the cluster) is fixed, not hours later."""


class NotConfirmed(RetryLater):
    """A quiet decision the API could not confirm (the watches may be behind): 503."""


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
    body: bytes  # the serialised answer (not the decisions: they hold the parsed alerts)
    confirm: tuple[str, ...]  # targets whose quiet decision must be confirmed again
    counters: tuple[tuple[Any, Any, int], ...]  # (decision counter, alert counter, alerts) per decision
    size: int


def alert_reason(d: Decision) -> str:
    """A bounded label for why the alerts got their decision (the typed cause from decide)."""
    return d.why.value if d.why is not None else d.kind.value  # None: a decision built by hand


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
        *,
        repeat_cache_bytes: int = REPEAT_CACHE_BYTES,
        told_cache_bytes: int = TOLD_CACHE_BYTES,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics.create()  # a private set unless the process's is given
        self._config = config
        self._states = states
        self._executor = executor
        self._notifier = notifier
        self._clock = clock
        self._told: OrderedDict[tuple[str, str, bytes], None] = OrderedDict()
        self._told_max = max(1, told_cache_bytes // _TOLD_ENTRY_BYTES)
        self._last_record: dict[str, RollbackRecord] = {}
        self._repeats: OrderedDict[bytes, _Repeat] = OrderedDict()
        self._repeat_budget = repeat_cache_bytes
        self._repeat_bytes = 0
        self._repeat_gauge = self.metrics.cache_bytes.labels("repeat")
        self._told_gauge = self.metrics.cache_bytes.labels("told")

    def broken_targets(self) -> dict[str, str]:
        """Targets that cannot be rolled back (a Deployment missing), for /health."""
        port = self._states
        return port.misconfigured() if isinstance(port, ConfirmingStates) else {}

    async def _confirmed(self, names: list[str]) -> dict[str, TargetState] | None:
        """The named targets' states read from the API; None when the port cannot."""
        port = self._states
        if not names or not isinstance(port, ConfirmingStates):
            return None
        return await port.confirm(names)

    def _drop_repeat(self, key: bytes) -> None:
        entry = self._repeats.pop(key, None)
        if entry is not None:
            self._repeat_bytes -= entry.size
            self._repeat_gauge.set(self._repeat_bytes)

    async def repeat(self, body: bytes) -> bytes | None:
        """The answer for a byte-identical delivery whose inputs have not changed, else None.

        Alertmanager re-sends the same group every group_interval and repeat_interval,
        byte for byte, and the common answer is "already rolled back". decide() is pure,
        so the same body, config and target states give the same decisions; only quiet
        decisions (no claim, no notification) are reused, and they do not depend on the
        clock (mute expiry and the fight window only move decisions out of QUIET). The
        watches may lag, so a decision they could have produced wrongly is confirmed
        against the API again before it is reused.
        """
        key = body_digest(body)
        entry = self._repeats.get(key)
        if entry is None:
            return None
        if entry.config is not self._config() or entry.states != self._states.states():
            self._drop_repeat(key)
            return None
        if entry.confirm:
            try:
                fresh = await self._confirmed(list(entry.confirm))
            except Exception:  # the full path says why (and answers 503)
                self._drop_repeat(key)
                return None
            if fresh is not None and any(fresh.get(n) != entry.states.get(n) for n in entry.confirm):
                self._drop_repeat(key)
                return None
        self._repeats.move_to_end(key)
        for decisions, alerts, n in entry.counters:  # repeats are counted, not logged
            decisions.inc()
            alerts.inc(n)
        return entry.body

    def remember(self, record: RollbackRecord) -> None:
        """Keep the latest rollback per target, so a later 'resolved' can reply in its thread."""
        self._last_record[record.target] = record

    async def _decide(self, payload: WebhookPayload, config: Config) -> tuple[list[Decision], dict[str, TargetState]]:
        """decide(), with the decisions a stale watch could have produced confirmed by the API."""
        states = self._states.states()
        decisions = decide(payload, config, states, self._clock())
        doubtful = [d.target for d in decisions if d.kind in CONFIRMED]
        try:
            fresh = await self._confirmed(doubtful)
        except Exception as e:
            log.warning("quiet_decision_not_confirmed", targets=doubtful, error=str(e))
            raise NotConfirmed(
                f"the cluster could not be read to confirm {', '.join(doubtful)}: {e}", decisions) from e
        if fresh is None or all(states.get(n) == st for n, st in fresh.items()):
            return decisions, states
        log.info("watch_behind_api", targets=[n for n, st in fresh.items() if states.get(n) != st])
        states = {**states, **fresh}
        return decide(payload, config, states, self._clock()), states

    async def handle(self, payload: WebhookPayload, body: bytes | None = None) -> WebhookResult:
        config = self._config()
        decisions, states = await self._decide(payload, config)
        records: list[RollbackRecord] = []
        failures: list[str] = []
        broken: list[str] = []
        final: list[Decision] = []
        for d in decisions:
            target = config.target(d.target)
            assert target is not None  # decide only names configured targets
            bound = log.bind(target=d.target, fingerprints=list(d.fingerprints))
            if d.kind is DecisionKind.ROLL_BACK:
                try:
                    record = await self._executor.claim(d, target)
                except Exception as e:
                    bound.error("could not record rollback intent; Alertmanager will retry",
                                decision=d.kind.value, error=str(e))
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
            bound = bound.bind(decision=d.kind.value)
            if d.kind is DecisionKind.MISCONFIGURED:
                bound.error("target_misconfigured", reason=d.reason, rule=d.rule)
                broken.append(d.reason)
            else:
                bound.info("decided", reason=d.reason, rule=d.rule, phase=str(d.phase) if d.phase else None)
            self.metrics.decisions.labels(d.target, d.kind.value).inc()
            self.metrics.alerts.labels(d.kind.value, alert_reason(d)).inc(len(d.alerts))
            if d.kind in NOTIFIED and self._first_time(d):
                self._notifier.decision(d, target, self._last_record.get(d.target))
            final.append(d)
        if failures:
            raise IntentNotRecorded("; ".join(failures), final)
        if broken:
            raise Misconfigured("; ".join(broken), final)
        result = WebhookResult(final, records)
        if body is not None and all(d.kind in QUIET for d in final):
            self._keep_repeat(body, config, states, result)
        return result

    def _keep_repeat(self, body: bytes, config: Config, states: dict[str, TargetState],
                     result: WebhookResult) -> None:
        final = result.decisions
        counters = tuple(
            (self.metrics.decisions.labels(d.target, d.kind.value),
             self.metrics.alerts.labels(d.kind.value, alert_reason(d)), len(d.alerts))
            for d in final
        )
        answer = result.response_body
        size = len(answer) + _ENTRY_OVERHEAD + 256 * len(states)
        if size > self._repeat_budget:
            return
        key = body_digest(body)
        self._drop_repeat(key)
        confirm = tuple(d.target for d in final if d.kind in CONFIRMED)
        self._repeats[key] = _Repeat(config, states, answer, confirm, counters, size)
        self._repeat_bytes += size
        while self._repeat_bytes > self._repeat_budget:
            _, old = self._repeats.popitem(last=False)
            self._repeat_bytes -= old.size
        self._repeat_gauge.set(self._repeat_bytes)

    def _first_time(self, d: Decision) -> bool:
        """Repeats of the same alerts with the same decision post nothing new.

        Keyed by a digest of the fingerprints: a 10,000-alert group costs 16 bytes here,
        not its fingerprints."""
        digest = hashlib.blake2b("\n".join(sorted(d.fingerprints)).encode(), digest_size=16).digest()
        key = (d.target, d.kind.value, digest)
        if key in self._told:
            self._told.move_to_end(key)
            return False
        self._told[key] = None
        while len(self._told) > self._told_max:
            self._told.popitem(last=False)
        self._told_gauge.set(len(self._told) * _TOLD_ENTRY_BYTES)
        return True
