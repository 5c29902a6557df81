"""Incoming-webhook delivery: one message per event that matters, no threads, no updates.

A webhook returns no ts, so nothing can be edited or threaded. To keep the channel
readable it posts the start of a rollback, warnings and failed steps, the outcome (a
failure with the on-call mention), and the muted / dry-run / halted / resolved notes;
plain progress changes and routine steps stay in the logs.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from slack_sdk.webhook.async_client import AsyncWebhookClient

from receiver.domain import messages
from receiver.domain.decisions import DecisionKind
from receiver.domain.rollback import Phase, RollbackRecord
from receiver.metrics import Metrics
from receiver.notify.base import (
    MAX_REMEMBERED,
    AnnounceEvent,
    ConfigProvider,
    DecisionEvent,
    DeliveryPolicy,
    Event,
    QueuedNotifier,
    RollbackEvent,
)
from receiver.notify.bot import retry_handlers

if TYPE_CHECKING:
    from receiver.domain.settings import SlackSettings

log = structlog.get_logger("receiver.notify.factory")

_HINTS = {
    "no_service": "the webhook URL was revoked or mistyped: create a new one and update {source}",
    "no_active_hooks": "the webhook's app is disabled: re-enable it or create a new webhook URL",
    "channel_not_found": "the webhook's channel was deleted: create a new webhook URL",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or create a new webhook URL",
    "action_prohibited": "a workspace admin restricts posting to the webhook's channel",
    "posting_to_general_channel_denied": "only admins may post in #general: use another channel",
    "invalid_payload": "Slack rejected the payload: a bug in receiver/domain/messages.py, please report it",
    "invalid_token": "the webhook URL is not valid: check {source}",
}

#: Refusals that last until a person acts: Slack counts as down.
LASTING = frozenset(_HINTS) - {"invalid_payload"}


class SlackWebhookNotifier(QueuedNotifier):
    """Posts through an incoming webhook (slack-sdk's AsyncWebhookClient)."""

    mode = "webhook"

    def __init__(
        self,
        settings: SlackSettings,
        url: str,
        url_source: str,
        *,
        config: ConfigProvider | None = None,
        policy: DeliveryPolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(settings, config=config, policy=policy, metrics=metrics)
        self._source = url_source
        self.client = AsyncWebhookClient(
            url,
            timeout=settings.timeout_seconds,  # type: ignore[arg-type]  # float works (aiohttp)
            retry_handlers=retry_handlers(self.policy),
        )
        self._started: OrderedDict[str, bool] = OrderedDict()  # rollback id -> outcome posted

    async def send(self, bound: Any, msg: messages.SlackMessage, what: str) -> bool:
        attempt = 0
        while True:
            try:
                resp = await self.client.send(text=msg.text, blocks=list(msg.blocks),
                                              unfurl_links=False, unfurl_media=False)
            except TimeoutError:
                self.metrics.slack_messages.labels("webhook", "timeout").inc()
                bound.warning("slack_message_maybe_lost", reason="webhook timed out, not re-posted",
                              what=what, text=msg.text)
                return False
            except aiohttp.ClientConnectorError as e:
                self.metrics.slack_messages.labels("webhook", "unreachable").inc()
                if await self.wait_before_retry("webhook", attempt, bound, f"cannot connect: {e.os_error}"):
                    attempt += 1
                    continue
                bound.warning("slack_message_lost", what=what, error="unreachable", text=msg.text)
                return False
            except aiohttp.ClientError as e:
                self.metrics.slack_messages.labels("webhook", "connection_lost").inc()
                bound.warning("slack_message_maybe_lost", reason="connection cut, not re-posted", what=what,
                              error=str(e), text=msg.text)
                return False
            if resp.status_code == 200:
                self.mark_up()
                self.metrics.slack_messages.labels("webhook", "ok").inc()
                self.clear_problems("webhook")
                return True
            error = (resp.body or f"http_{resp.status_code}").strip()[:100]
            if resp.status_code == 429 or resp.status_code >= 500:
                self.metrics.slack_messages.labels(
                    "webhook", "rate_limited" if resp.status_code == 429 else "server_error").inc()
                if await self.wait_before_retry("webhook", attempt, bound, f"HTTP {resp.status_code}"):
                    attempt += 1
                    continue
            else:
                self.mark_up()
            self.metrics.slack_messages.labels(
                "webhook", error if error in _HINTS else f"http_{resp.status_code}").inc()
            fix = _HINTS.get(error, "see https://api.slack.com/messaging/webhooks#handling_errors").format(
                source=self._source)
            fields = dict(status=resp.status_code, error=error, fix=fix, what=what)
            if error in LASTING:
                if not self.set_problem("webhook", f"webhook: {error}", bound, **fields):
                    bound.warning("slack_webhook_refused", text=msg.text, **fields)
            else:
                bound.error("slack_webhook_refused", text=msg.text, **fields)
            return False

    async def deliver(self, ev: Event) -> None:
        if isinstance(ev, AnnounceEvent):
            await self.send(log.bind(target=ev.target), ev.message, "announcement")
        elif isinstance(ev, RollbackEvent):
            await self._rollback(ev)
        else:
            await self._decision(ev)

    async def _rollback(self, ev: RollbackEvent) -> None:
        rec: RollbackRecord = ev.record
        bound = log.bind(rollback_id=rec.id, target=rec.target, fingerprints=list(rec.fingerprints))
        target = self.target(rec.target)
        if rec.id not in self._started:
            self._started[rec.id] = False
            while len(self._started) > MAX_REMEMBERED:
                self._started.popitem(last=False)
            if not rec.phase.finished:
                await self.send(bound, messages.parent(rec, target), "start")
        if ev.step is not None and ev.step.name == "recovery" and (
                told := messages.recovery_reply(rec, self.slack_settings().oncall_mention)):
            await self.send(bound, told, "recovery")  # recovered too: runbook step 4 is news
        elif ev.step is not None and (ev.step.warning or not ev.step.ok):
            await self.send(bound, messages.step_reply(rec, ev.step), "step")
        if rec.phase.finished and not self._started[rec.id]:
            self._started[rec.id] = True
            if rec.phase is Phase.FAILED:
                msg = messages.failure_broadcast(rec, self.slack_settings().oncall_mention, target)
            else:
                msg = messages.parent(rec, target)
            await self.send(bound, msg, "outcome")

    async def _decision(self, ev: DecisionEvent) -> None:
        d = ev.decision
        bound = log.bind(target=d.target, decision=d.kind.value, fingerprints=list(d.fingerprints))
        if d.kind is DecisionKind.RESOLVED:
            msg = messages.resolved_followup(d, self.latest(ev.record) if ev.record else None)
        else:
            msg = messages.decision_message(d, ev.target, self.slack_settings().oncall_mention)
        if msg is not None:
            await self.send(bound, msg, d.kind.value)
