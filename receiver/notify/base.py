"""The bounded queue and single worker every notifier delivers through.

The executor and the service call ``rollback_changed`` / ``decision`` from the event
loop; those only enqueue, so a slow or absent Slack can never delay a rollback. One
worker drains the queue in order, which keeps each rollback's messages in order. When
the queue is full the event is dropped, logged and counted: the outcome is still in the
logs, the metrics, the Kubernetes events and the status API.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from receiver.domain.messages import SlackMessage
from receiver.domain.rollback import RollbackRecord, Step
from receiver.metrics import Metrics

if TYPE_CHECKING:
    from receiver.domain.decisions import Decision
    from receiver.domain.settings import Config, SlackSettings, Target

log = structlog.get_logger("receiver.notify.factory")

OnThread = Callable[[str, str, str], Awaitable[None]]
ConfigProvider = Callable[[], "Config"]

#: Rollbacks remembered for updates and resolved follow-ups (oldest forgotten first).
MAX_REMEMBERED = 1000


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard to try. Defaults suit production; tests shrink the delays to milliseconds."""

    retry_initial: float = 0.5
    retry_max: float = 10.0
    #: While Slack is unreachable, the head event is retried this long; after that every
    #: event gets a single try and is logged as lost, so the queue cannot back up forever.
    give_up_after: float = 120.0
    rate_limit_retries: int = 3
    server_error_retries: int = 2
    server_error_backoff: float = 0.5
    connection_retries: int = 1


@dataclass(frozen=True, slots=True)
class RollbackEvent:
    record: RollbackRecord
    step: Step | None


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    decision: Decision
    target: Target
    record: RollbackRecord | None


@dataclass(frozen=True, slots=True)
class AnnounceEvent:
    """A person's action (mute, unmute, breaker closed) or a mute's expiry: one message in
    the target's channel (the default channel for every-target news)."""

    target: str | None
    message: SlackMessage


Event = RollbackEvent | DecisionEvent | AnnounceEvent


def event_fields(ev: Event) -> dict[str, object]:
    """What identifies an event in a log line (never any secret)."""
    if isinstance(ev, AnnounceEvent):
        return {"target": ev.target, "announcement": ev.message.text[:200]}
    if isinstance(ev, RollbackEvent):
        return {"rollback_id": ev.record.id, "target": ev.record.target,
                "fingerprints": list(ev.record.fingerprints), "phase": ev.record.phase.value}
    return {"target": ev.decision.target, "decision": ev.decision.kind.value,
            "fingerprints": list(ev.decision.fingerprints)}


class QueuedNotifier:
    """Enqueue from the caller, deliver from one worker; subclasses implement ``deliver``."""

    mode = "base"

    def __init__(
        self,
        settings: SlackSettings,
        *,
        config: ConfigProvider | None = None,
        policy: DeliveryPolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics.create()  # a private set unless the process's is given
        self._settings = settings
        self._config = config
        self.policy = policy or DeliveryPolicy()
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=settings.queue_size)
        self._worker: asyncio.Task[None] | None = None
        #: The newest record per rollback as enqueued, so a late delivery shows the latest state.
        self._latest: OrderedDict[str, RollbackRecord] = OrderedDict()
        self._down_since: float | None = None
        #: Lasting failures by what they concern ("auth", "connection", "channel C123"):
        #: Slack counts as down while any is known, until a call shows it fixed.
        self._problems: dict[str, str] = {}
        self.metrics.slack_up.set(1)

    # --- what the service and executor call (never blocks) ---------------------------

    def rollback_changed(self, record: RollbackRecord, step: Step | None = None) -> None:
        self._latest[record.id] = record
        self._latest.move_to_end(record.id)
        while len(self._latest) > MAX_REMEMBERED:
            self._latest.popitem(last=False)
        self._enqueue(RollbackEvent(record, step))

    def decision(self, decision: Decision, target: Target, record: RollbackRecord | None = None) -> None:
        self._enqueue(DecisionEvent(decision, target, record))

    def announce(self, target: str | None, msg: SlackMessage) -> None:
        self._enqueue(AnnounceEvent(target, msg))

    def _enqueue(self, ev: Event) -> None:
        try:
            self._queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.metrics.slack_dropped.inc()
            log.warning("slack_notification_dropped", reason="queue full (Slack slow or down?)",
                        queue_size=self._queue.maxsize, mode=self.mode, **event_fields(ev))

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"slack-notifier-{self.mode}")

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 - the agreed interface
        """Deliver what is queued for up to ``timeout`` seconds, then log what is left as lost."""
        if self._worker is not None and not self._worker.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._worker = None
        left = 0
        while not self._queue.empty():
            ev = self._queue.get_nowait()
            self._queue.task_done()
            left += 1
            log.warning("slack_notification_lost", reason="shutdown", mode=self.mode, **event_fields(ev))
        if left:
            self.metrics.slack_dropped.inc(left)
        await self.aclose()

    async def aclose(self) -> None:
        """Release clients; subclasses override."""

    async def drained(self) -> None:
        """Wait until everything enqueued so far has been handled (for tests and the demo)."""
        await self._queue.join()

    async def _run(self) -> None:
        await self.on_start()
        while True:
            ev = await self._queue.get()
            try:
                await self.deliver(ev)
            except asyncio.CancelledError:
                self._queue.task_done()
                self.metrics.slack_dropped.inc()
                log.warning("slack_notification_lost", reason="shutdown while being delivered", mode=self.mode,
                            **event_fields(ev))
                raise
            except Exception:
                log.exception("slack_notifier_failed", mode=self.mode, **event_fields(ev))
            self._queue.task_done()

    async def on_start(self) -> None:
        """First thing the worker does (the bot checks its token)."""

    async def deliver(self, ev: Event) -> None:
        raise NotImplementedError

    # --- helpers for subclasses ----------------------------------------------------

    def latest(self, record: RollbackRecord) -> RollbackRecord:
        return self._latest.get(record.id, record)

    def slack_settings(self) -> SlackSettings:
        """The live settings when a config provider was given (mention, default channel)."""
        return self._config().slack if self._config is not None else self._settings

    def target(self, name: str) -> Target | None:
        return self._config().target(name) if self._config is not None else None

    def channel_for(self, target: Target | None) -> str:
        if target is not None and target.slack_channel:
            return target.slack_channel
        return self.slack_settings().default_channel

    async def wait_before_retry(self, method: str, attempt: int, bound: structlog.typing.FilteringBoundLogger,
                                why: str) -> bool:
        """Back off before retrying an undelivered call; False when it is time to give up."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        if now - self._down_since >= self.policy.give_up_after:
            self.metrics.slack_messages.labels(method, "gave_up").inc()
            self.set_problem("connection", f"Slack unreachable for {round(now - self._down_since)} s ({why})")
            return False
        delay = min(self.policy.retry_max, self.policy.retry_initial * 2**attempt)
        delay *= 0.5 + random.random() / 2
        bound.info("slack_retry", reason="unreachable", method=method, why=why, retry_in=round(delay, 3),
                   down_for=round(now - self._down_since, 1))
        await asyncio.sleep(delay)
        return True

    def mark_up(self) -> None:
        if self._down_since is not None:
            log.info("slack_reachable", mode=self.mode, down_for=round(time.monotonic() - self._down_since, 1))
        self._down_since = None
        self.clear_problems("connection")

    # --- up or down: /health, receiver_slack_up, one log line per change ----------------

    def problem(self) -> str | None:
        """What keeps Slack from working for good right now (None: up), for /health."""
        return "; ".join(self._problems.values()) or None

    def set_problem(self, key: str, text: str, bound: structlog.typing.FilteringBoundLogger | None = None,
                    **fields: object) -> bool:
        """Record a lasting failure; True (and one error line) when Slack just went down."""
        was_up = not self._problems
        self._problems[key] = text
        if was_up:
            self.metrics.slack_up.set(0)
            (bound or log).error("slack_down", mode=self.mode, problem=text, **fields)
        return was_up

    def clear_problems(self, *keys: str) -> None:
        """Forget the failures a successful call disproved; one line when Slack is up again."""
        if not self._problems:
            return
        for key in keys:
            self._problems.pop(key, None)
        if not self._problems:
            self.metrics.slack_up.set(1)
            # at error like the down line, so whoever filters on errors also sees it end
            log.error("slack_up", mode=self.mode, reason="a call succeeded again")
