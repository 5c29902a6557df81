"""What a person asked for from Slack, parsed from a button click or a slash command: pure.

Slack sends two kinds of requests (over HTTP or Socket Mode, the same payloads): an
interactive ``block_actions`` payload (a button on one of our messages) and a slash
command (``/rollback …``). Both become one ``SlackRequest`` carrying a typed action, or
a ``Refusal`` saying in words what was wrong; nothing here talks to Slack or the cluster.

Buttons carry a small JSON value ``{"t": target, "r": rollback id}`` so that a click on
an old message still names what it was about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

#: Button action ids (the ``action_id`` of each button we put on a message).
MUTE_1H = "rollback_mute_1h"
UNMUTE = "rollback_unmute"
RETRY = "rollback_retry"
REPROMOTE = "rollback_repromote"  # back to the phase before a rollback (confirm dialog)
ACKNOWLEDGE = "rollback_ack"
CLOSE_BREAKER = "rollback_close_breaker"
ROLLBACK_ANYWAY = "rollback_anyway"
ROLLBACK_CONFIRMED = "rollback_confirmed"  # the button under "/rollback TARGET"
#: Link buttons (runbook, graph, dashboard, silence) also send a payload: nothing to do.
LINK_PREFIX = "rollback_link_"

#: Allowlist kinds (slack.actions.allow keys) and which one each action needs; None = read-only.
Kind = Literal["mute", "rollback", "promote", "ack"]

MAX_MUTE = timedelta(days=7)
_DURATION = re.compile(r"^(\d+)(m|min|h|d)$")
_TARGET = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
GLOBAL = "all"  # `/rollback mute all 1h …` mutes every target

HELP = (
    "Usage: `/rollback status [TARGET]` · `/rollback history TARGET` · "
    "`/rollback mute TARGET|all 2h REASON` · `/rollback unmute TARGET|all` · `/rollback TARGET` (asks to confirm)"
)


@dataclass(frozen=True, slots=True)
class SlackUser:
    id: str
    name: str

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass(frozen=True, slots=True)
class Status:
    target: str | None


@dataclass(frozen=True, slots=True)
class History:
    target: str


@dataclass(frozen=True, slots=True)
class MuteAction:
    target: str | None  # None = every target
    duration: timedelta
    reason: str


@dataclass(frozen=True, slots=True)
class UnmuteAction:
    target: str | None


@dataclass(frozen=True, slots=True)
class RollbackAction:
    target: str
    confirmed: bool  # False: answer with a confirm button first
    retry_of: str | None = None  # the failed rollback a Retry button was on


@dataclass(frozen=True, slots=True)
class RepromoteAction:
    """Re-promote ``target`` to the phase it was in before rollback ``rollback_id``."""

    target: str
    rollback_id: str


@dataclass(frozen=True, slots=True)
class CloseBreakerAction:
    pass


@dataclass(frozen=True, slots=True)
class AcknowledgeAction:
    rollback_id: str
    target: str


@dataclass(frozen=True, slots=True)
class LinkClicked:
    """A URL button: Slack opened the link and tells us; nothing to do."""


@dataclass(frozen=True, slots=True)
class Help:
    pass


Action = (Status | History | MuteAction | UnmuteAction | RollbackAction | CloseBreakerAction
          | AcknowledgeAction | RepromoteAction | LinkClicked | Help)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Input we cannot act on; ``text`` is said to the person, nothing changes."""

    text: str


@dataclass(frozen=True, slots=True)
class SlackRequest:
    """One request from Slack, whichever door it came through."""

    source: Literal["button", "command"]
    user: SlackUser
    channel: str
    action: Action | Refusal
    response_url: str | None = None
    message_ts: str | None = None  # the message the button was on
    thread_ts: str | None = None  # where to tell the channel: that message's thread


def kind_of(action: Action | Refusal) -> Kind | None:
    """The allowlist a person must be on for this action; None = open to the channel."""
    if isinstance(action, MuteAction | UnmuteAction):
        return "mute"
    if isinstance(action, RollbackAction | CloseBreakerAction):
        return "rollback"
    if isinstance(action, AcknowledgeAction):
        return "ack"
    if isinstance(action, RepromoteAction):
        return "promote"
    return None


def allowed(allow: Iterable[str], user: SlackUser, groups_of_user: Iterable[str] = ()) -> bool:
    """On the list by user id (U…/W…) or through a user group (S…) the user belongs to."""
    listed = set(allow)
    return user.id in listed or bool(listed & set(groups_of_user))


def button_value(target: str, rollback_id: str | None = None) -> str:
    """The small JSON a button carries (Slack allows 2000 characters)."""
    data = {"t": target}
    if rollback_id:
        data["r"] = rollback_id
    return json.dumps(data, separators=(",", ":"))


def parse_duration(text: str) -> timedelta | None:
    """30m, 2h, 1d (at most 7 days); None when not understood."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    delta = {"m": timedelta(minutes=n), "min": timedelta(minutes=n), "h": timedelta(hours=n),
             "d": timedelta(days=n)}[unit]
    return delta if timedelta(0) < delta <= MAX_MUTE else None


def _user(raw: Any) -> SlackUser | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
        return None
    name = raw.get("username") or raw.get("name") or raw["id"]
    return SlackUser(raw["id"], str(name))


def _obj(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


def _value(raw: Any) -> dict[str, str]:
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def parse_interaction(payload: Mapping[str, Any]) -> SlackRequest | Refusal:
    """A ``block_actions`` payload (one button) -> SlackRequest; anything else -> Refusal."""
    user = _user(payload.get("user"))
    if payload.get("type") != "block_actions" or user is None:
        return Refusal(f"unsupported interaction {str(payload.get('type'))[:40]!r}")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        return Refusal("the interaction carries no action")
    first = actions[0]
    container = _obj(payload.get("container"))
    channel_obj = _obj(payload.get("channel"))
    message = _obj(payload.get("message"))
    channel = str(channel_obj.get("id") or container.get("channel_id") or "")
    message_ts = str(container.get("message_ts") or message.get("ts") or "") or None
    # a click on a private (ephemeral) message has no thread to tell: the channel is told
    thread_ts = None if container.get("is_ephemeral") else (str(message.get("thread_ts") or "") or message_ts)
    action = _button_action(str(first.get("action_id") or ""), _value(first.get("value")))
    response_url = payload.get("response_url")
    return SlackRequest("button", user, channel, action, response_url if isinstance(response_url, str) else None,
                        message_ts, thread_ts)


def _button_action(action_id: str, value: dict[str, str]) -> Action | Refusal:
    if action_id.startswith(LINK_PREFIX):
        return LinkClicked()
    target, rollback_id = value.get("t"), value.get("r")
    if action_id == CLOSE_BREAKER:
        return CloseBreakerAction()
    known = {MUTE_1H, UNMUTE, RETRY, ACKNOWLEDGE, ROLLBACK_ANYWAY, ROLLBACK_CONFIRMED, REPROMOTE}
    if action_id not in known:
        return Refusal(f"unknown action {action_id[:60]!r}: this receiver does not know that button; nothing changed")
    if not target or not _TARGET.match(target):
        return Refusal("the button does not name a target; nothing changed")
    if action_id == MUTE_1H:
        return MuteAction(target, timedelta(hours=1), "muted from Slack")
    if action_id == UNMUTE:
        return UnmuteAction(target)
    if action_id in (ACKNOWLEDGE, REPROMOTE):
        if not rollback_id:
            return Refusal("the button does not name a rollback; nothing changed")
        return (AcknowledgeAction(rollback_id, target) if action_id == ACKNOWLEDGE
                else RepromoteAction(target, rollback_id))
    if action_id == RETRY:
        return RollbackAction(target, confirmed=True, retry_of=rollback_id)
    return RollbackAction(target, confirmed=True)


def parse_command(form: Mapping[str, Any]) -> SlackRequest | Refusal:
    """A slash command's fields (command, text, user_id, user_name, channel_id, response_url)."""
    user_id = str(form.get("user_id") or "")
    if not user_id or not form.get("command"):
        return Refusal("not a slash command")
    user = SlackUser(user_id, str(form.get("user_name") or user_id))
    response_url = form.get("response_url")
    return SlackRequest("command", user, str(form.get("channel_id") or ""), parse_text(str(form.get("text") or "")),
                        response_url if isinstance(response_url, str) else None)


def _target_arg(word: str, *, allow_all: bool = False) -> str | Refusal | None:
    if allow_all and word.lower() == GLOBAL:
        return None
    if not _TARGET.match(word):
        return Refusal(f"{word[:60]!r} is not a target name. {HELP}")
    return word


def parse_text(text: str) -> Action | Refusal:
    """The words after ``/rollback``."""
    words = text.split()
    if not words or words[0].lower() == "help":
        return Help()
    verb, args = words[0].lower(), words[1:]
    if verb == "status":
        if len(args) > 1:
            return Refusal(f"`status` takes at most one target. {HELP}")
        t = _target_arg(args[0]) if args else None
        return t if isinstance(t, Refusal) else Status(t)
    if verb == "history":
        if len(args) != 1:
            return Refusal(f"`history` needs one target. {HELP}")
        t = _target_arg(args[0])
        return t if isinstance(t, Refusal) else History(str(t))
    if verb == "mute":
        if len(args) < 3:
            return Refusal(f"`mute` needs a target, a duration and a reason, e.g. `/rollback mute payments 2h "
                           f"release freeze`. {HELP}")
        t = _target_arg(args[0], allow_all=True)
        if isinstance(t, Refusal):
            return t
        d = parse_duration(args[1])
        if d is None:
            return Refusal(f"{args[1][:20]!r} is not a duration: use 30m, 2h or 1d (at most 7 days)")
        return MuteAction(t, d, " ".join(args[2:])[:500])
    if verb == "unmute":
        if len(args) != 1:
            return Refusal(f"`unmute` needs one target (or `all`). {HELP}")
        t = _target_arg(args[0], allow_all=True)
        return t if isinstance(t, Refusal) else UnmuteAction(t)
    if len(words) == 1:
        t = _target_arg(words[0])
        return t if isinstance(t, Refusal) else RollbackAction(str(t), confirmed=False)
    return Refusal(f"I did not understand `{' '.join(words)[:80]}`. {HELP}")


def spoken(d: timedelta) -> str:
    """1 h, 30 min, 2 d: a mute's length the way the thread says it."""
    minutes = int(d.total_seconds() // 60)
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)} d"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"
