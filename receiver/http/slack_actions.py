"""The one dispatcher behind both Slack doors (POST /slack/events and Socket Mode).

A request is acknowledged at once (Slack waits 3 s); the work runs in a background
task: who may act is checked against slack.actions.allow (user ids, or user groups the
user is in via usergroups.users.list), the action goes through the same Actions door as
the CLI (``ActionsPort``: mute, unmute, close_breaker, rollback), and the result is told
to the person privately (response_url, else chat.postEphemeral) and, for a change, in
the message's thread ("muted finance-service for 1 h by @alice from Slack"). Bad input
(an unknown button, a rollback that no longer exists, a malformed command) gets a clear
private answer and changes nothing; a refusal is logged (``slack_action_refused``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from receiver.actions import Actor, phase_named, phases_for
from receiver.domain import messages
from receiver.domain.rollback import Phase, RollbackRecord
from receiver.domain.settings import Config
from receiver.domain.slack_actions import (
    HELP,
    AcknowledgeAction,
    CloseBreakerAction,
    Help,
    History,
    LinkClicked,
    MuteAction,
    Refusal,
    RepromoteAction,
    RollbackAction,
    SlackRequest,
    Status,
    UnmuteAction,
    allowed,
    kind_of,
    spoken,
)
from receiver.status.views import ClusterObjects, build_history, build_status, lease_records

log = structlog.get_logger(__name__)

#: How long a user group's members are trusted before asking Slack again.
GROUP_CACHE_SECONDS = 60.0


class ActionsPort(Protocol):
    """The Actions door (receiver/actions): the same checks, Events and Lease rules as the CLI."""

    async def mute(self, target: str | None, *, until: datetime, reason: str, actor: Any) -> object: ...
    async def unmute(self, target: str | None, *, actor: Any) -> object: ...
    async def close_breaker(self, *, actor: Any) -> object: ...
    async def rollback(self, target: str, *, actor: Any, dry_run: bool = False) -> object: ...
    async def promote(self, target: str, *, to: str | None = None, actor: Any, force_reason: str | None = None,
                      dry_run: bool = False) -> Any: ...


class ViewsPort(Protocol):
    """Read-only answers for ``/rollback status`` and ``history`` (mrkdwn text)."""

    async def status(self, target: str | None) -> str: ...
    async def history(self, target: str) -> str: ...


class RecordViews:
    """Status and history from the rollback records (the Leases), until the shared status
    view lands: the latest rollback per target and a target's recent ones."""

    def __init__(self, list_rollbacks: Callable[[], Awaitable[list[RollbackRecord]]],
                 config: Callable[[], Config]) -> None:
        self._list = list_rollbacks
        self._config = config

    async def status(self, target: str | None) -> str:
        records = sorted(await self._list(), key=lambda r: r.started_at)
        names = [target] if target else [t.name for t in self._config().targets]
        lines = []
        for name in names:
            last = next((r for r in reversed(records) if r.target == name), None)
            state = (f"last rollback `{last.id}`: {messages.describe_state(last)}" if last
                     else "no rollback recorded")
            lines.append(f"• `{messages.esc(name)}`: {messages.esc(state)}")
        return "*Status*\n" + "\n".join(lines)

    async def history(self, target: str) -> str:
        records = [r for r in await self._list() if r.target == target]
        records.sort(key=lambda r: r.started_at, reverse=True)
        if not records:
            return f"No rollbacks of `{messages.esc(target)}` recorded."
        lines = [f"• {r.started_at:%Y-%m-%d %H:%M} UTC `{r.id}`: {messages.esc(messages.describe_state(r))} "
                 f"({messages.esc(messages.describe_why(r))})" for r in records[:10]]
        return f"*Rollbacks of `{messages.esc(target)}`* (newest first)\n" + "\n".join(lines)


class ClusterViews:
    """``/rollback status`` and ``history`` from the shared view module (receiver/status):
    the same as `receiver status` / `receiver history` and GET /targets, /rollbacks."""

    def __init__(self, read: Callable[[], Awaitable[ClusterObjects]], config: Callable[[], Config],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._read = read
        self._config = config
        self._clock = clock

    async def status(self, target: str | None) -> str:
        view = build_status(self._config(), await self._read(), self._clock(), target)
        lines = []
        for t in view.targets:
            parts = [t.phase.text if t.phase else "canary unreadable",
                     f"canary {t.canary.ready if t.canary.ready is not None else '?'}/{t.canary.replicas or 0} ready",
                     f"stable {t.stable.ready if t.stable.ready is not None else '?'}/{t.stable.replicas or 0} ready"]
            if t.mute:
                parts.append(f"muted by {t.mute.by}: {t.mute.reason}")
            if t.rollback:
                parts.append(f"rolling back ({t.rollback.phase}, {t.rollback.step or 'starting'})")
            elif t.last:
                parts.append(f"last rollback {t.last.outcome}")
            lines.append(f"• `{messages.esc(t.name)}`: {messages.esc(' · '.join(parts))}")
        return "*Status*\n" + "\n".join(lines)

    async def history(self, target: str) -> str:
        config = self._config()
        view = build_history(lease_records(config, await self._read()), target=target)
        if not view.rollbacks:
            return f"No rollbacks of `{messages.esc(target)}` recorded."
        lines = [f"• {e.started_at:%Y-%m-%d %H:%M} UTC `{e.id}`: {messages.esc(e.outcome)} "
                 f"({messages.esc(e.reason)})" for e in view.rollbacks[:10]]
        return f"*Rollbacks of `{messages.esc(target)}`* (newest first)\n" + "\n".join(lines)


class SlackDispatcher:
    """Takes parsed requests from either door; acts in the background; answers in Slack."""

    def __init__(
        self,
        config: Callable[[], Config],
        web: AsyncWebClient,
        *,
        actions: ActionsPort | None,
        views: ViewsPort | None,
        find_rollback: Callable[[str], Awaitable[RollbackRecord | None]],
        acknowledge: Callable[[str, str], bool] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        actor: Callable[..., Any] = Actor,
        door_announces: bool = False,
    ) -> None:
        """``actor`` builds the door's actor (receiver.actions.Actor);
        ``door_announces``: the door tells the channel itself, so the thread note is skipped."""
        self._config = config
        self.web = web
        self._actions = actions
        self._views = views
        self._find = find_rollback
        self._acknowledge = acknowledge
        self._clock = clock
        self._actor = actor
        self._door_announces = door_announces
        self._tasks: set[asyncio.Task[None]] = set()
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    def accept(self, parsed: SlackRequest | Refusal, via: str) -> None:
        """Called by a door right after acknowledging: the work runs in the background."""
        if isinstance(parsed, Refusal):
            log.warning("slack_request_unusable", via=via, error=parsed.text)
            return
        task = asyncio.create_task(self.handle(parsed, via), name="slack-action")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drained(self) -> None:
        """Until every accepted request has been handled (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a shutdown budget
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in self._tasks:
            task.cancel()

    # --- handling ------------------------------------------------------------------

    async def handle(self, req: SlackRequest, via: str) -> None:
        bound = log.bind(slack_user=req.user.id, channel=req.channel, source=req.source, via=via,
                         action=type(req.action).__name__)
        try:
            await self._handle(req, bound)
        except Exception as e:  # the person must hear it failed; the log has the detail (never the text
            bound.exception("slack_action_failed")  # of an unexpected error in Slack: it may carry URLs)
            await self.reply(req, f":x: That failed ({type(e).__name__}); nothing more was done. "
                                  "The receiver's log has the detail (`slack_action_failed`).")

    async def _handle(self, req: SlackRequest, bound: Any) -> None:
        action = req.action
        if isinstance(action, LinkClicked):
            return
        if isinstance(action, Refusal):
            bound.info("slack_action_invalid", error=action.text)
            await self.reply(req, f":warning: {action.text}")
            return
        if isinstance(action, Help):
            await self.reply(req, HELP)
            return
        kind = kind_of(action)
        if kind is not None:
            allow = list(getattr(self._config().slack.actions.allow, kind))
            if not allowed(allow, req.user, await self._groups_of(req.user.id, allow, bound)):
                bound.warning("slack_action_refused", reason="not on slack.actions.allow", kind=kind)
                await self.reply(req, f":no_entry: You are not allowed to {kind} from Slack "
                                      f"(slack.actions.allow.{kind}). Nothing changed.")
                return
        problem = self._unknown_target(action)
        if problem:
            await self.reply(req, f":warning: {problem} Nothing changed.")
            return
        if isinstance(action, Status | History):
            await self._read_only(req, action)
            return
        if isinstance(action, RollbackAction) and not action.confirmed:
            target = self._config().target(action.target)
            assert target is not None  # checked by _unknown_target
            confirm = messages.confirm_rollback(target)
            await self.reply(req, confirm.text, list(confirm.blocks))
            return
        if isinstance(action, AcknowledgeAction | RollbackAction | RepromoteAction):
            gone = await self._rollback_gone(action)
            if gone:
                await self.reply(req, f":warning: {gone} Nothing changed.")
                return
        if isinstance(action, AcknowledgeAction):
            await self._ack(req, action, bound)
            return
        if self._actions is None:
            await self.reply(req, ":warning: This receiver cannot act from Slack yet (no actions wired). "
                                  "Nothing changed.")
            return
        if isinstance(action, RepromoteAction):
            await self._repromote(req, action, bound)
            return
        await self._act(req, action, bound)

    def _unknown_target(self, action: Any) -> str | None:
        name = getattr(action, "target", None)
        if name is None or self._config().target(name) is not None:
            return None
        known = ", ".join(t.name for t in self._config().targets)
        return f"There is no target `{messages.esc(name)}` (known: {messages.esc(known)})."

    async def _rollback_gone(self, action: AcknowledgeAction | RollbackAction | RepromoteAction) -> str | None:
        rollback_id = action.retry_of if isinstance(action, RollbackAction) else action.rollback_id
        if rollback_id is None:
            return None
        record = await self._find(rollback_id)
        if record is None:
            return f"Rollback `{messages.esc(rollback_id)}` no longer exists."
        if isinstance(action, RepromoteAction) and (record.phase is not Phase.SUCCEEDED or record.is_promotion):
            return (f"Rollback `{messages.esc(rollback_id)}` did not roll back ({record.phase.value}): "
                    "nothing to re-promote.")
        if isinstance(action, RollbackAction) and record.phase is not Phase.FAILED:
            return f"Rollback `{messages.esc(rollback_id)}` did not fail ({record.phase.value}): nothing to retry."
        return None

    async def _read_only(self, req: SlackRequest, action: Status | History) -> None:
        if self._views is None:
            await self.reply(req, ":warning: status and history are not available on this receiver.")
            return
        text = (await self._views.status(action.target) if isinstance(action, Status)
                else await self._views.history(action.target))
        await self.reply(req, text)

    async def _ack(self, req: SlackRequest, action: AcknowledgeAction, bound: Any) -> None:
        shown = self._acknowledge(action.rollback_id, req.user.id) if self._acknowledge else False
        record_ack = getattr(self._actions, "acknowledge", None)
        if record_ack is not None:  # the door records it as a Kubernetes Event
            actor = self._actor(name=req.user.name, via="slack", slack_user=req.user.id)
            await record_ack(action.target, action.rollback_id, actor=actor)
        bound.info("slack_rollback_acknowledged", rollback_id=action.rollback_id, shown_on_message=shown)
        await self.tell(req, f":raising_hand: {req.user.mention} acknowledged rollback "
                             f"`{messages.esc(action.rollback_id)}` from Slack: they are on it.")
        await self.reply(req, f"You acknowledged `{messages.esc(action.rollback_id)}`.")

    async def _act(self, req: SlackRequest, action: Any, bound: Any) -> None:
        """Through the Actions door. A result with ``changed`` False (unmuting what was not
        muted) is said privately only; its ``message`` (the door's sentence) is the answer."""
        assert self._actions is not None
        actor = self._actor(name=req.user.name, via="slack", slack_user=req.user.id)
        who = f"by {req.user.mention} from Slack"
        try:
            if isinstance(action, MuteAction):
                until = self._clock() + action.duration
                result = await self._actions.mute(action.target, until=until, reason=action.reason, actor=actor)
                what = (f":no_bell: muted {self._named(action.target)} for {spoken(action.duration)} {who}: "
                        f"{messages.esc(action.reason)}")
            elif isinstance(action, UnmuteAction):
                result = await self._actions.unmute(action.target, actor=actor)
                what = f":bell: unmuted {self._named(action.target)} {who}"
            elif isinstance(action, CloseBreakerAction):
                result = await self._actions.close_breaker(actor=actor)
                what = f":electric_plug: breaker closed {who}: automatic rollbacks resume"
            else:
                assert isinstance(action, RollbackAction)
                await self._rollback(req, action, actor, who, bound)
                return
        except ValueError as e:  # refused by the door's checks (bad until, unknown target, …)
            bound.info("slack_action_not_done", error=str(e))
            await self.reply(req, f":warning: Not done: {messages.esc(str(e))}")
            return
        said = getattr(result, "message", None)
        if getattr(result, "changed", True) is False:
            bound.info("slack_action_nothing_to_do", text=said)
            await self.reply(req, f"Nothing to do: {messages.esc(said or 'nothing changed')}")
            return
        bound.info("slack_action_done", text=what)
        if not self._door_announces:
            await self.tell(req, what)
        await self.reply(req, f"Done: {messages.esc(said) if isinstance(said, str) else what}")

    async def _rollback(self, req: SlackRequest, action: RollbackAction, actor: Any, who: str, bound: Any) -> None:
        """A rollback runs to its end inside the door (minutes): say it started first."""
        assert self._actions is not None
        again = " again" if action.retry_of else ""
        what = f":rewind: rollback of `{messages.esc(action.target)}` started{again} {who}"
        bound.info("slack_action_done", text=what)
        await self.tell(req, what)
        await self.reply(req, f"Done: {what}")
        try:
            record = await self._actions.rollback(action.target, actor=actor)
        except ValueError as e:
            await self.reply(req, f":warning: Not done: {messages.esc(str(e))}")
            return
        if isinstance(record, RollbackRecord):
            await self.reply(req, f"Rollback `{messages.esc(record.id)}` of `{messages.esc(record.target)}`: "
                                  f"{messages.esc(messages.describe_state(record))}")

    async def _repromote(self, req: SlackRequest, action: RepromoteAction, bound: Any) -> None:
        """Back to the phase before the rollback, through the door's promotion (the gate's
        review first: a gate that is not passed refuses, as in the CLI without --force).
        The review and the outcome go to the rollback's thread."""
        assert self._actions is not None
        config = self._config()
        target = config.target(action.target)
        record = await self._find(action.rollback_id)
        assert target is not None and record is not None  # checked by _unknown_target / _rollback_gone
        phase = phase_named(record.rollout_phase, phases_for(config, target))
        if phase is None:
            await self.reply(req, f":warning: Rollback `{messages.esc(record.id)}` does not say which phase "
                                  f"`{messages.esc(target.name)}` was in before it "
                                  f"({messages.esc(record.rollout_phase or 'not recorded')}); use "
                                  "`receiver promote`. Nothing changed.")
            return
        actor = self._actor(name=req.user.name, via="slack", slack_user=req.user.id)
        who = f"by {req.user.mention} from Slack"
        await self.reply(req, f"Re-promoting `{messages.esc(target.name)}` to {messages.esc(phase.display)}: "
                              "the gate's review first; the outcome goes to the thread.")
        try:
            done = await self._actions.promote(target.name, to=phase.name, actor=actor)
        except ValueError as e:  # nothing ahead, the split moved on, …: the door's words
            bound.info("slack_action_not_done", error=str(e))
            await self.reply(req, f":warning: Not done: {messages.esc(str(e))}")
            return
        review = f"```{done.review.table()}```"
        if done.refused is not None:
            bound.info("slack_repromote_refused", verdict=done.refused)
            await self.tell(req, f":no_entry: re-promotion of `{messages.esc(target.name)}` to "
                                 f"{messages.esc(phase.display)} {who} refused: {messages.esc(done.refused)}. "
                                 f"Nothing changed; `receiver promote --force --reason` overrides it.\n{review}")
            await self.reply(req, f"Not done: {messages.esc(done.refused)}")
            return
        outcome = done.record
        ok = outcome is not None and outcome.phase is Phase.SUCCEEDED
        said = (f":arrow_forward: `{messages.esc(target.name)}` re-promoted to {messages.esc(phase.display)} {who} "
                f"({target.canary} {done.plan.canary_to}, {target.stable} {done.plan.stable_to}, verified)"
                if ok else
                f":x: re-promotion of `{messages.esc(target.name)}` to {messages.esc(phase.display)} {who} "
                f"NOT done: {messages.esc(str(getattr(outcome, 'error', None) or 'no outcome'))}")
        bound.info("slack_action_done" if ok else "slack_action_failed_outcome", text=said)
        await self.tell(req, f"{said}\n{review}")
        await self.reply(req, ("Done: " if ok else "") + said)

    @staticmethod
    def _named(target: str | None) -> str:
        return f"`{messages.esc(target)}`" if target else "every target"

    async def _groups_of(self, user: str, allow: list[str], bound: Any) -> list[str]:
        """The listed user groups ``user`` is in (usergroups.users.list, cached a minute)."""
        groups = [g for g in allow if g.startswith("S")]
        mine = []
        now = time.monotonic()
        for group in groups:
            cached = self._groups.get(group)
            if cached is None or now - cached[0] > GROUP_CACHE_SECONDS:
                try:
                    resp = await self.web.usergroups_users_list(usergroup=group)
                    cached = (now, frozenset(resp.get("users") or ()))
                except SlackApiError as e:
                    bound.warning("slack_usergroup_unreadable", usergroup=group, error=str(e.response.get("error")),
                                  fix="add the usergroups:read scope to the Slack app")
                    continue
                self._groups[group] = cached
            if user in cached[1]:
                mine.append(group)
        return mine

    # --- answering -----------------------------------------------------------------

    async def reply(self, req: SlackRequest, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """Privately to the person: through response_url, else chat.postEphemeral."""
        try:
            if req.response_url:
                resp = await AsyncWebhookClient(req.response_url).send(
                    text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
                if resp.status_code == 200:
                    return
                log.warning("slack_response_url_failed", status=resp.status_code, body=resp.body[:200])
            await self.web.chat_postEphemeral(channel=req.channel, user=req.user.id, text=text, blocks=blocks)
        except Exception as e:
            log.warning("slack_reply_failed", error=type(e).__name__, slack_user=req.user.id)  # no response_url

    async def tell(self, req: SlackRequest, text: str) -> None:
        """In the message's thread (a button) or the channel (a command): the channel's record."""
        try:
            await self.web.chat_postMessage(channel=req.channel, text=text, thread_ts=req.thread_ts)
        except Exception as e:
            log.warning("slack_thread_note_failed", error=repr(e), channel=req.channel)
