"""What a click or a /rollback command means, parsed before anything acts on it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from receiver.domain import slack_actions as sa


def click(action_id: str, value: object = None, **extra: object) -> sa.SlackRequest | sa.Refusal:
    payload = {"type": "block_actions", "user": {"id": "U1", "username": "alice"},
               "container": {"channel_id": "C1", "message_ts": "10.1"}, "response_url": "https://r",
               "actions": [{"action_id": action_id,
                            "value": value if isinstance(value, str) else json.dumps(value or {})}], **extra}
    return sa.parse_interaction(payload)


@pytest.mark.parametrize(("text", "expected"), [
    ("", sa.Help()),
    ("status", sa.Status(None)),
    ("status payments", sa.Status("payments")),
    ("history payments", sa.History("payments")),
    ("mute payments 2h release freeze", sa.MuteAction("payments", timedelta(hours=2), "release freeze")),
    ("mute all 30m db migration", sa.MuteAction(None, timedelta(minutes=30), "db migration")),
    ("unmute payments", sa.UnmuteAction("payments")),
    ("payments", sa.RollbackAction("payments", confirmed=False)),
])
def test_each_documented_command_means_what_the_readme_says(text: str, expected: object) -> None:
    assert sa.parse_text(text) == expected


@pytest.mark.parametrize("text", ["mute payments 8d too long", "mute payments 0h none", "mute payments 2 hours x",
                                  "status a b", "history", "Payments", "mute <!channel> 1h x", "payments now"])
def test_a_malformed_command_is_refused_in_words(text: str) -> None:
    result = sa.parse_text(text)
    assert isinstance(result, sa.Refusal) and result.text


def test_a_button_names_its_target_and_rollback_and_the_thread_to_tell() -> None:
    req = click(sa.RETRY, {"t": "payments", "r": "rb-1"})
    assert isinstance(req, sa.SlackRequest)
    assert req.action == sa.RollbackAction("payments", confirmed=True, retry_of="rb-1")
    assert (req.user, req.channel, req.thread_ts, req.response_url) == (sa.SlackUser("U1", "alice"), "C1", "10.1",
                                                                       "https://r")


def test_a_button_on_a_private_message_is_told_in_the_channel_not_a_thread() -> None:
    req = click(sa.ROLLBACK_CONFIRMED, {"t": "payments"},
                container={"channel_id": "C1", "message_ts": "10.1", "is_ephemeral": True})
    assert isinstance(req, sa.SlackRequest) and req.thread_ts is None


@pytest.mark.parametrize(("action_id", "value"), [
    ("rollback_frobnicate", {"t": "payments"}),
    (sa.MUTE_1H, {}),
    (sa.MUTE_1H, "not json"),
    (sa.ACKNOWLEDGE, {"t": "payments"}),  # no rollback id
    (sa.UNMUTE, {"t": "Bad Name"}),
])
def test_an_unknown_or_incomplete_button_is_a_refusal(action_id: str, value: object) -> None:
    req = click(action_id, value)
    assert isinstance(req, sa.SlackRequest) and isinstance(req.action, sa.Refusal)
    assert "nothing changed" in req.action.text


def test_only_block_actions_from_a_user_are_taken() -> None:
    assert isinstance(sa.parse_interaction({"type": "view_submission", "user": {"id": "U1"}}), sa.Refusal)
    assert isinstance(sa.parse_interaction({"type": "block_actions", "actions": [{}]}), sa.Refusal)


def test_who_may_act_is_by_user_id_or_a_group_the_user_is_in() -> None:
    alice = sa.SlackUser("U1", "alice")
    assert sa.allowed(["U1"], alice)
    assert sa.allowed(["S9"], alice, ["S9"])
    assert not sa.allowed(["S9", "U2"], alice, [])
    assert not sa.allowed([], alice)
    assert sa.kind_of(sa.Status(None)) is None and sa.kind_of(sa.CloseBreakerAction()) == "rollback"


def test_an_allowlist_of_names_instead_of_ids_is_refused_by_the_config() -> None:
    from receiver.domain.settings import ConfigError
    from tests.fixtures.slack import SLACK_CONFIG, parse_config

    text = SLACK_CONFIG.replace("slack:\n", "slack:\n  actions:\n    allow:\n      mute: ['@alice']\n")
    with pytest.raises(ConfigError, match=r"slack.actions.allow.mute.0"):
        parse_config(text)
    assert parse_config(text.replace("@alice", "U0ALICE")).slack.actions.allow.mute == ["U0ALICE"]
