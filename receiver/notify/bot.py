"""Slack Web API delivery: one parent per rollback, updated in place, the timeline threaded.

Delivery is at most once per message. A call that timed out may have landed, so it is
never repeated (the loss is logged); a call that certainly did not land (connection
refused, 429, 5xx once slack-sdk's retry handlers are exhausted) is retried while Slack
is down, up to DeliveryPolicy.give_up_after. chat.update is idempotent and is simply
tried again with the next change.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.web.async_client import AsyncWebClient

from receiver.domain import messages
from receiver.domain.decisions import DecisionKind
from receiver.domain.rollback import Phase, RollbackRecord, Step
from receiver.metrics import Metrics
from receiver.notify.base import (
    MAX_REMEMBERED,
    AnnounceEvent,
    ConfigProvider,
    DecisionEvent,
    DeliveryPolicy,
    Event,
    OnThread,
    QueuedNotifier,
    RollbackEvent,
)

if TYPE_CHECKING:
    from receiver.domain.settings import SlackSettings, Target

log = structlog.get_logger("receiver.notify.factory")

#: Errors whose fix is in the operator's hands, and what to do about each.
_HINTS = {
    "channel_not_found": "channel {channel} does not exist or the bot cannot see it: fix slack.default_channel "
                         "or the target's slack_channel in config.yaml (private channels need /invite @bot)",
    "not_in_channel": "invite the bot to {channel}: /invite @<bot name> in that channel",
    "is_archived": "{channel} is archived: unarchive it or point config.yaml at another channel",
    "invalid_auth": "the bot token is not valid: check {token_source} (an xoxb- token of this workspace)",
    "not_authed": "no bot token was sent: set {token_source}",
    "token_revoked": "the bot token was revoked: reinstall the Slack app and update {token_source}",
    "account_inactive": "the bot's token belongs to a deactivated app or user: reinstall and update {token_source}",
    "missing_scope": "the Slack app lacks the chat:write scope: add it and reinstall the app",
    "restricted_action": "a workspace admin restricts posting in {channel}: ask them or use another channel",
    "msg_too_long": "a message exceeded Slack's limits: a bug in receiver/domain/messages.py, please report it",
    "invalid_blocks": "Slack rejected the blocks: a bug in receiver/domain/messages.py, please report it",
    "message_not_found": "the parent message was deleted: further updates go nowhere, the thread may be gone",
    "cant_update_message": "the bot may only update its own messages: was the parent posted by another app?",
    "edit_window_closed": "the workspace forbids editing messages this old: updates stop",
}


#: Refusals that last until a person acts: Slack counts as down (/health, receiver_slack_up).
AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
                         "no_permission", "org_login_required", "team_access_not_granted", "ekm_access_denied"})
CHANNEL_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived", "restricted_action"})
#: Reads that find an earlier parent after a restart need these scopes; without them a
#: restart may post a second parent, the rest works.
LOOKUP_HINTS = {
    "missing_scope": "add the channels:read, channels:history (and groups:read, groups:history for private "
                     "channels) scopes to the Slack app, so a restarted receiver finds its earlier messages",
    "channel_not_found": "the bot cannot see the channel: invite it (/invite @<bot name>)",
}

#: Message metadata (Slack's {event_type, event_payload}) that ties messages to a rollback.
PARENT_EVENT, STEP_EVENT, FAILURE_EVENT = "rollback", "rollback_step", "rollback_failure"
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
MAX_PAGES = 5  # of conversations.list/history/replies when looking for earlier messages
CLOCK_SKEW_SECONDS = 600  # a parent is looked for from this long before the rollback started


def metadata(event_type: str, rollback_id: str, **extra: str) -> dict[str, Any]:
    return {"event_type": event_type, "event_payload": {"rollback_id": rollback_id, **extra}}


def is_ours(message: Any, event_type: str, rollback_id: str) -> bool:
    md = message.get("metadata") if isinstance(message, dict) else None
    if not isinstance(md, dict) or md.get("event_type") != event_type:
        return False
    payload = md.get("event_payload")
    return isinstance(payload, dict) and payload.get("rollback_id") == rollback_id


def step_key(step: Step) -> str:
    """What identifies a timeline step in the thread (its name and when it happened)."""
    return f"{step.name}@{step.at.isoformat()}"


def hint(error: str, channel: str, token_source: str) -> str:
    template = _HINTS.get(error, "see https://api.slack.com/methods for the error {error}")
    return template.format(channel=channel, token_source=token_source, error=error)


class Outcome(enum.Enum):
    OK = "ok"
    NOT_DELIVERED = "not_delivered"  # certainly not posted (refused, rate limited, 5xx)
    MAYBE_DELIVERED = "maybe_delivered"  # timed out or cut off: it may have landed
    REJECTED = "rejected"  # Slack answered ok=false: retrying will not help


@dataclass(frozen=True, slots=True)
class CallResult:
    outcome: Outcome
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class _Thread:
    """What the notifier knows of one rollback's conversation."""

    rollback_id: str
    target: str
    channel: str | None = None  # channel id, as chat.update needs
    ts: str | None = None
    lost: bool = False  # the parent may have landed, but its ts is unknown
    synced: bool = False  # looked for what an earlier process posted
    posted: set[str] = field(default_factory=set)  # step keys told (or lost) in the thread
    last_parent: dict[str, Any] | None = None
    failure_sent: bool = False
    outcome_sent: bool = False
    record: RollbackRecord | None = None
    resolved: set[frozenset[str]] = field(default_factory=set)


class _ProportionalJitter(Jitter):
    """Up to 50 % extra: slack-sdk's default jitter adds a whole second, too slow for tests."""

    def recalculate(self, duration: float) -> float:
        import random

        return duration * (1 + random.random() / 2)


def retry_handlers(policy: DeliveryPolicy) -> list[Any]:
    """Rate-limit, server-error and connection retries, as slack-sdk offers them.

    Connection retries are limited to errors before the request was sent
    (ClientConnectorError): a dropped connection after sending may have delivered it.
    """
    interval = BackoffRetryIntervalCalculator(policy.server_error_backoff, jitter=_ProportionalJitter())
    return [
        AsyncRateLimitErrorRetryHandler(max_retry_count=policy.rate_limit_retries),
        AsyncServerErrorRetryHandler(max_retry_count=policy.server_error_retries, interval_calculator=interval),
        AsyncConnectionErrorRetryHandler(
            max_retry_count=policy.connection_retries,
            interval_calculator=interval,
            error_types=[aiohttp.ClientConnectorError],
        ),
    ]


class SlackBotNotifier(QueuedNotifier):
    """Posts with a bot token through slack-sdk's AsyncWebClient."""

    mode = "bot"

    def __init__(
        self,
        settings: SlackSettings,
        token: str,
        token_source: str,
        *,
        on_thread: OnThread | None = None,
        config: ConfigProvider | None = None,
        policy: DeliveryPolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(settings, config=config, policy=policy, metrics=metrics)
        self._token_source = token_source
        self._on_thread = on_thread
        self.client = AsyncWebClient(
            token=token,
            base_url=settings.api_url,
            timeout=settings.timeout_seconds,  # type: ignore[arg-type]  # float works (aiohttp)
            retry_handlers=retry_handlers(self.policy),
        )
        self._threads: OrderedDict[str, _Thread] = OrderedDict()
        self._by_target: dict[str, str] = {}  # target -> latest rollback id
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._channel_ids: dict[str, str] = {}  # "#name" -> id, from posts and conversations.list
        #: Set by serve when Slack actions (buttons, /rollback) are wired: messages carry action buttons.
        self.actions_enabled = False
        self._acked: OrderedDict[str, str] = OrderedDict()  # rollback id -> Slack user id who took it

    def extras(self, rollback_id: str | None = None) -> messages.Extras:
        """Links (buttons when Slack actions are wired), action buttons, who acknowledged."""
        am = self._config().alertmanager.external_url if self._config is not None else None
        return messages.Extras(actions=self.actions_enabled, alertmanager_url=am,
                               acked_by=self._acked.get(rollback_id) if rollback_id else None)

    def acknowledge(self, rollback_id: str, user_id: str) -> bool:
        """Record who took a rollback; its parent is re-rendered to show it. False: unknown here."""
        th = self._threads.get(rollback_id)
        if th is None or th.record is None:
            return False
        self._acked[rollback_id] = user_id
        while len(self._acked) > MAX_REMEMBERED:
            self._acked.popitem(last=False)
        self.rollback_changed(th.record)
        return True

    # --- the one place that talks to Slack -----------------------------------------

    async def call(self, method: str, bound: Any, *, lookup: bool = False, **body: Any) -> CallResult:
        """One Web API call with the retries of the module docstring.

        ``lookup`` marks a read (conversations.*): sent as a GET with query parameters, as
        Slack wants for reads, and a refusal is only a warning (posting still works)."""
        attempt = 0
        channel = str(body.get("channel", ""))
        while True:
            try:
                if lookup:
                    resp = await self.client.api_call(method, http_verb="GET", params=body)
                else:
                    resp = await self.client.api_call(method, json=body)
            except SlackApiError as e:
                status = e.response.status_code
                data = e.response.data if isinstance(e.response.data, dict) else {}
                error = str(data.get("error") or f"http_{status}")
                if status == 429 or status >= 500:
                    self.metrics.slack_messages.labels(
                        method, "rate_limited" if status == 429 else "server_error").inc()
                    if await self.wait_before_retry(method, attempt, bound, f"HTTP {status} {error}"):
                        attempt += 1
                        continue
                    return CallResult(Outcome.NOT_DELIVERED, error=error)
                self.mark_up()
                self.metrics.slack_messages.labels(method, error).inc()
                self._refused(method, error, channel, bound, lookup=lookup)
                return CallResult(Outcome.REJECTED, data=data, error=error)
            except TimeoutError:
                self.metrics.slack_messages.labels(method, "timeout").inc()
                bound.warning("slack_call_timed_out", reason="not repeated: it may have been delivered",
                              method=method, channel=channel, timeout=self._settings.timeout_seconds)
                return CallResult(Outcome.MAYBE_DELIVERED, error="timeout")
            except aiohttp.ClientConnectorError as e:
                self.metrics.slack_messages.labels(method, "unreachable").inc()
                if await self.wait_before_retry(method, attempt, bound, f"cannot connect: {e.os_error}"):
                    attempt += 1
                    continue
                return CallResult(Outcome.NOT_DELIVERED, error="unreachable")
            except aiohttp.ClientError as e:
                self.metrics.slack_messages.labels(method, "connection_lost").inc()
                bound.warning("slack_connection_lost", reason="not repeated: it may have been delivered",
                              method=method, channel=channel, error=str(e))
                return CallResult(Outcome.MAYBE_DELIVERED, error="connection_lost")
            self.mark_up()
            self.metrics.slack_messages.labels(method, "ok").inc()
            self.clear_problems("auth", *([f"channel {channel}"] if channel and not lookup else []))
            return CallResult(Outcome.OK, data=dict(resp.data) if isinstance(resp.data, dict) else {})

    def _refused(self, method: str, error: str, channel: str, bound: Any, *, lookup: bool) -> None:
        """Log a refusal; a lasting one (token, channel) marks Slack down, logged once per change."""
        fix = hint(error, channel, self._token_source)
        if error in AUTH_ERRORS or (error == "missing_scope" and not lookup):
            key, text = "auth", f"{method}: {error}"
        elif error in CHANNEL_ERRORS and not lookup:
            key, text = f"channel {channel}", f"{method} to {channel}: {error}"
        elif lookup:
            bound.warning("slack_lookup_refused", method=method, error=error, channel=channel,
                          fix=LOOKUP_HINTS.get(error, fix))
            return
        else:  # not lasting (a message too long, ...): each one is an error of its own
            bound.error("slack_call_refused", method=method, error=error, channel=channel, fix=fix)
            return
        if not self.set_problem(key, text, bound, method=method, error=error, channel=channel, fix=fix):
            bound.warning("slack_call_refused", method=method, error=error, channel=channel, fix=fix)

    async def post(self, bound: Any, channel: str, msg: messages.SlackMessage, what: str,
                   **extra: Any) -> CallResult:
        """chat.postMessage; anything but OK is logged with the text, so the news is in the logs."""
        r = await self.call("chat.postMessage", bound, channel=channel, **msg.payload(),
                            unfurl_links=False, unfurl_media=False, **extra)
        if r.outcome is Outcome.MAYBE_DELIVERED:
            bound.warning("slack_message_maybe_lost", reason="timed out or cut off, not re-posted", what=what,
                          text=msg.text)
        elif r.outcome is not Outcome.OK:
            bound.warning("slack_message_lost", what=what, error=r.error, text=msg.text)
        elif not channel.startswith(("C", "G", "D")) and r.data.get("channel"):
            self._channel_ids[channel] = str(r.data["channel"])
        return r

    async def on_start(self) -> None:
        """Check the token once (single try, never blocking the queue for long)."""
        try:
            resp = await self.client.auth_test()
        except SlackApiError as e:
            error = str(e.response.get("error") or e.response.status_code) if isinstance(e.response.data, dict) \
                else str(e.response.status_code)
            fix = hint(error, "", self._token_source)
            if error in AUTH_ERRORS:
                self.set_problem("auth", f"auth.test: {error}", method="auth.test", error=error, fix=fix)
            else:
                log.error("slack_auth_test_failed", error=error, fix=fix)
            return
        except (TimeoutError, aiohttp.ClientError) as e:
            log.warning("slack_unreachable_at_start", reason="messages will be retried",
                        error=str(e) or type(e).__name__, api_url=self._settings.api_url)
            return
        self.clear_problems("auth")
        log.info("slack_bot_ready", team=resp.get("team"), user=resp.get("user"), api_url=self._settings.api_url)

    async def aclose(self) -> None:
        if self._side_tasks:
            await asyncio.wait(self._side_tasks, timeout=2.0)
        if self.client.session is not None:
            await self.client.session.close()

    # --- events --------------------------------------------------------------------

    async def deliver(self, ev: Event) -> None:
        if isinstance(ev, AnnounceEvent):
            target = self.target(ev.target) if ev.target else None
            await self.post(log.bind(target=ev.target), self.channel_for(target), ev.message, "announcement")
        elif isinstance(ev, RollbackEvent):
            await self._rollback(ev)
        else:
            await self._decision(ev)

    def _thread_for(self, ev: RollbackEvent) -> _Thread:
        rec = ev.record
        th = self._threads.get(rec.id)
        if th is None:
            th = _Thread(rec.id, rec.target)
            if rec.slack_channel and rec.slack_ts:
                # Resumed after a restart: the parent exists; continue it, do not post another.
                th.channel, th.ts = rec.slack_channel, rec.slack_ts
                log.info("slack_thread_continued", rollback_id=rec.id, target=rec.target,
                         channel=th.channel, ts=th.ts)
            self._threads[rec.id] = th
            while len(self._threads) > MAX_REMEMBERED:
                self._threads.popitem(last=False)
        self._by_target[rec.target] = rec.id
        return th

    async def _rollback(self, ev: RollbackEvent) -> None:
        rec = ev.record
        latest = self.latest(rec)
        bound = log.bind(rollback_id=rec.id, target=rec.target, fingerprints=list(rec.fingerprints))
        target = self.target(rec.target)
        th = self._thread_for(ev)
        th.record = latest
        steps = list(rec.steps)
        if ev.step is not None and ev.step not in rec.steps:
            steps.append(ev.step)

        if not th.synced:
            await self._sync(th, rec, ev, target, bound)
        elif th.lost:
            await self._adopt_earlier_parent(th, rec, target, bound)
        if th.ts is None and not th.lost:
            if not await self._post_parent(th, latest, target, bound):
                return  # nothing landed: the next change posts the parent with every step
        elif th.ts is not None:
            await self._update_parent(th, latest, target, bound)

        for step in steps:
            key = step_key(step)
            if key in th.posted:
                continue
            th.posted.add(key)  # at most once: a lost reply is logged, never repeated
            reply = messages.step_reply(rec, step)
            if step.name == "recovery" and (told := messages.recovery_reply(rec, self.slack_settings().oncall_mention)):
                reply = told  # the recovery outcome; NOT recovered is broadcast to the channel
            if th.ts is None:
                bound.info("slack_step_not_posted", reason="thread unknown", step=step.name, text=reply.text)
                continue
            await self.post(bound, th.channel or "", reply, "step", thread_ts=th.ts,
                            metadata=metadata(STEP_EVENT, rec.id, step=key),
                            **({"reply_broadcast": True} if step.name == "recovery" and rec.recovery
                               and rec.recovery.outcome.value == "not_recovered" else {}))

        if rec.phase is Phase.FAILED and not th.failure_sent and not rec.is_promotion:
            th.failure_sent = True
            mention = self.slack_settings().oncall_mention
            msg = messages.failure_broadcast(rec, mention, target)
            md = metadata(FAILURE_EVENT, rec.id)
            if th.ts is not None:
                await self.post(bound, th.channel or "", msg, "failure", thread_ts=th.ts, reply_broadcast=True,
                                metadata=md)
            else:
                await self.post(bound, self.channel_for(target), msg, "failure", metadata=md)
        if th.lost and rec.phase is Phase.SUCCEEDED and not th.outcome_sent:
            th.outcome_sent = True
            await self.post(bound, self.channel_for(target), messages.parent(rec, target, self.extras(rec.id)),
                            "outcome")

    # --- finding what an earlier process (or a lost answer) left in Slack ---------------

    async def _sync(self, th: _Thread, rec: RollbackRecord, ev: RollbackEvent, target: Target | None,
                    bound: Any) -> None:
        """First sight of a rollback in this process: find its parent and the steps already told.

        The parent's ts reaches the Lease only after chat.postMessage answered, so a crash in
        between (or a lost answer) leaves a parent this process does not know: it is found
        by the rollback id in its metadata, never posted twice."""
        th.synced = True
        if th.ts is None:
            await self._adopt_earlier_parent(th, rec, target, bound)
        if th.ts is None:
            return
        told = await self._thread_told(th, rec.id, bound)
        if told is None:  # cannot read the thread: assume the record's steps were posted
            new_step = ev.step is not None and rec.steps[-1:] == (ev.step,)
            told = {step_key(s) for s in (rec.steps[:-1] if new_step else rec.steps)}
        th.posted |= told

    async def _adopt_earlier_parent(self, th: _Thread, rec: RollbackRecord, target: Target | None,
                                    bound: Any) -> bool:
        """Look for this rollback's parent in the channel; continue it when found."""
        channel = await self._channel_id(self.channel_for(target), bound)
        if channel is None:
            return False
        ts = await self._find_parent(channel, rec, bound)
        if ts is None:
            return False
        th.channel, th.ts, th.lost, th.last_parent = channel, ts, False, None
        bound.info("slack_thread_found", channel=channel, ts=ts)
        self._remember_thread(rec.id, channel, ts, bound)
        return True

    async def _channel_id(self, channel: str, bound: Any) -> str | None:
        """The id conversations.* need for a configured "#name" (conversations.list, cached)."""
        if CHANNEL_ID.fullmatch(channel):
            return channel
        name = channel.removeprefix("#")
        if channel in self._channel_ids:
            return self._channel_ids[channel]
        cursor = ""
        for _ in range(MAX_PAGES):
            body: dict[str, Any] = {"types": "public_channel,private_channel", "exclude_archived": "true",
                                    "limit": 1000}
            if cursor:
                body["cursor"] = cursor
            r = await self.call("conversations.list", bound, lookup=True, **body)
            if r.outcome is not Outcome.OK:
                return None
            for ch in r.data.get("channels") or []:
                if isinstance(ch, dict) and ch.get("name") == name and ch.get("id"):
                    self._channel_ids[channel] = str(ch["id"])
                    return self._channel_ids[channel]
            cursor = str((r.data.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                break
        return None

    async def _find_parent(self, channel: str, rec: RollbackRecord, bound: Any) -> str | None:
        """The ts of the top-level message carrying this rollback's id in its metadata."""
        cursor = ""
        oldest = rec.started_at.timestamp() - CLOCK_SKEW_SECONDS
        for _ in range(MAX_PAGES):
            body: dict[str, Any] = {"channel": channel, "include_all_metadata": "true", "limit": 200,
                                    "oldest": f"{oldest:.6f}"}
            if cursor:
                body["cursor"] = cursor
            r = await self.call("conversations.history", bound, lookup=True, **body)
            if r.outcome is not Outcome.OK:
                return None
            for m in r.data.get("messages") or []:
                if is_ours(m, PARENT_EVENT, rec.id) and m.get("thread_ts") in (None, m.get("ts")):
                    return str(m["ts"])
            cursor = str((r.data.get("response_metadata") or {}).get("next_cursor") or "")
            if not r.data.get("has_more") or not cursor:
                break
        return None

    async def _thread_told(self, th: _Thread, rollback_id: str, bound: Any) -> set[str] | None:
        """The step keys already in the thread (None when the thread cannot be read)."""
        told: set[str] = set()
        cursor = ""
        for _ in range(MAX_PAGES):
            body: dict[str, Any] = {"channel": th.channel, "ts": th.ts, "include_all_metadata": "true",
                                    "limit": 200}
            if cursor:
                body["cursor"] = cursor
            r = await self.call("conversations.replies", bound, lookup=True, **body)
            if r.outcome is not Outcome.OK:
                return None
            for m in r.data.get("messages") or []:
                if is_ours(m, STEP_EVENT, rollback_id):
                    told.add(str(m["metadata"]["event_payload"].get("step")))
                elif is_ours(m, FAILURE_EVENT, rollback_id):
                    th.failure_sent = True
            cursor = str((r.data.get("response_metadata") or {}).get("next_cursor") or "")
            if not r.data.get("has_more") or not cursor:
                break
        return told

    async def _post_parent(self, th: _Thread, rec: RollbackRecord, target: Target | None, bound: Any) -> bool:
        msg = messages.parent(rec, target, self.extras(rec.id))
        r = await self.post(bound, self.channel_for(target), msg, "parent", metadata=metadata(PARENT_EVENT, rec.id))
        if r.outcome is Outcome.MAYBE_DELIVERED:
            if await self._adopt_earlier_parent(th, rec, target, bound):
                return True  # it had landed: continue it
            th.lost = True
            bound.warning("slack_parent_unknown", reason="the parent may be in Slack but its ts is unknown: "
                          "looked up again with the next change; else the outcome comes as a new message")
            return False
        if r.outcome is not Outcome.OK:
            return False
        th.channel, th.ts = str(r.data.get("channel", "")), str(r.data.get("ts", ""))
        th.last_parent = msg.payload()
        bound.info("slack_thread_started", channel=th.channel, ts=th.ts)
        self._remember_thread(rec.id, th.channel, th.ts, bound)
        return True

    def _remember_thread(self, rollback_id: str, channel: str, ts: str, bound: Any) -> None:
        if self._on_thread is not None:
            # In the background: storing it writes the Lease, which must not stall Slack delivery.
            task = asyncio.create_task(self._store_thread(rollback_id, channel, ts, bound))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def _store_thread(self, rollback_id: str, channel: str, ts: str, bound: Any) -> None:
        assert self._on_thread is not None
        try:
            await self._on_thread(rollback_id, channel, ts)
        except Exception:
            bound.exception("slack_thread_not_stored", reason="a restart finds the parent by its metadata")

    async def _update_parent(self, th: _Thread, rec: RollbackRecord, target: Target | None, bound: Any) -> None:
        msg = messages.parent(rec, target, self.extras(rec.id))
        payload = msg.payload()
        if payload == th.last_parent:
            return
        r = await self.call("chat.update", bound, channel=th.channel, ts=th.ts, **payload,
                            metadata=metadata(PARENT_EVENT, rec.id))
        if r.outcome is Outcome.OK or r.outcome is Outcome.REJECTED:
            th.last_parent = payload  # rejected: a retry will not help (deleted, not ours)
        # not delivered / maybe: chat.update is idempotent, the next change tries again

    async def _decision(self, ev: DecisionEvent) -> None:
        d, target = ev.decision, ev.target
        bound = log.bind(target=d.target, decision=d.kind.value, fingerprints=list(d.fingerprints))
        if d.kind is DecisionKind.RESOLVED:
            await self._resolved(ev, bound)
            return
        msg = messages.decision_message(d, target, self.slack_settings().oncall_mention, self.extras())
        if msg is not None:
            await self.post(bound, self.channel_for(target), msg, d.kind.value)

    async def _resolved(self, ev: DecisionEvent, bound: Any) -> None:
        d = ev.decision
        rid = ev.record.id if ev.record is not None else self._by_target.get(d.target)
        th = self._threads.get(rid) if rid else None
        rec = (th.record if th is not None else None) or ev.record
        msg = messages.resolved_followup(d, rec)
        if msg is None or rec is None:
            bound.debug("slack_resolved_not_followed_up", reason="no rollback to follow up")
            return
        key = frozenset(d.fingerprints)
        if th is not None:
            if key in th.resolved:
                return
            th.resolved.add(key)
        bound = bound.bind(rollback_id=rec.id)
        channel, ts = (th.channel, th.ts) if th is not None and th.ts else (rec.slack_channel, rec.slack_ts)
        if channel and ts:
            await self.post(bound, channel, msg, "resolved", thread_ts=ts)
        else:
            await self.post(bound, self.channel_for(ev.target), msg, "resolved")
