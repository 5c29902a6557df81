"""Acting from Slack: buttons and /rollback through both doors, real slack-sdk against the fake."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest

from receiver.domain import slack_actions as ids
from sim.slack import FakeSlack
from tests.fixtures.slack import LogWatch, failed_rollback, successful_rollback
from tests.slack.actions_harness import ALICE, BOB, NOW, DoorFactory, actions_config

CHANNEL = "#finance-alerts"


def texts(delivery: object) -> str:
    return " ".join(a.text for a in delivery.answers)  # type: ignore[attr-defined]


@pytest.mark.parametrize("socket", [False, True], ids=["http", "socket-mode"])
async def test_mute_from_the_button_reaches_the_actions_door_and_is_told_in_the_thread(
    fake_slack: FakeSlack, slack_door: DoorFactory, socket: bool
) -> None:
    door = await slack_door(socket=socket)
    rec = await door.play(successful_rollback())
    [parent] = fake_slack.messages(CHANNEL)

    d = await fake_slack.click(ALICE, CHANNEL, parent.ts, ids.MUTE_1H)
    await door.dispatcher.drained()

    assert d.acked and d.via == ("socket" if socket else "http")
    [(name, target, kw)] = door.actions.calls
    assert (name, target) == ("mute", "finance-service")
    assert kw["until"] == NOW + timedelta(hours=1)
    assert (kw["actor"].name, kw["actor"].via, kw["actor"].slack_user) == ("alice", "slack", ALICE)
    told = fake_slack.thread(CHANNEL, parent.ts)[-1].text
    assert told == ":no_bell: muted `finance-service` for 1 h by <@U0ALICE> from Slack: muted from Slack"
    assert "Done: :no_bell: muted `finance-service` for 1 h" in texts(d)
    assert rec.target == "finance-service"


@pytest.mark.parametrize("socket", [False, True], ids=["http", "socket-mode"])
async def test_retry_after_a_failed_rollback_starts_it_again_through_the_door(
    fake_slack: FakeSlack, slack_door: DoorFactory, socket: bool
) -> None:
    door = await slack_door(socket=socket)
    await door.play(failed_rollback())
    parent = fake_slack.messages(CHANNEL)[0]
    assert ids.RETRY in str(parent.blocks)  # only a failed rollback offers it

    d = await fake_slack.click(ALICE, CHANNEL, parent.ts, ids.RETRY)
    await door.dispatcher.drained()

    assert [(c[0], c[1]) for c in door.actions.calls] == [("rollback", "finance-service")]
    assert "rollback of `finance-service` started again by <@U0ALICE> from Slack" in texts(d)


async def test_a_successful_rollback_offers_no_retry(fake_slack: FakeSlack, slack_door: DoorFactory) -> None:
    await (await slack_door()).play(successful_rollback())
    parent = fake_slack.messages(CHANNEL)[0]
    assert ids.RETRY not in str(parent.blocks)
    assert ids.MUTE_1H in str(parent.blocks) and ids.ACKNOWLEDGE in str(parent.blocks)


async def test_a_user_not_on_the_allowlist_is_refused_privately_and_nothing_changes(
    fake_slack: FakeSlack, slack_door: DoorFactory, log_watch: LogWatch
) -> None:
    door = await slack_door()
    await door.play(failed_rollback())
    parent = fake_slack.messages(CHANNEL)[0]
    before = len(fake_slack.thread(CHANNEL, parent.ts))

    d = await fake_slack.click(BOB, CHANNEL, parent.ts, ids.RETRY)
    await door.dispatcher.drained()

    assert door.actions.calls == []
    assert "You are not allowed to rollback from Slack" in texts(d)
    assert [a.user for a in d.answers] == [BOB]  # privately: only bob sees it
    assert len(fake_slack.thread(CHANNEL, parent.ts)) == before
    [refused] = log_watch.find("slack_action_refused")
    assert refused["slack_user"] == BOB and refused["kind"] == "rollback"


async def test_a_user_group_on_the_allowlist_lets_its_members_act(
    fake_slack: FakeSlack, slack_door: DoorFactory
) -> None:
    door = await slack_door(config=actions_config(mute=["S0ONCALL"]))
    await door.play(successful_rollback())
    parent = fake_slack.messages(CHANNEL)[0]

    await fake_slack.click(ALICE, CHANNEL, parent.ts, ids.UNMUTE)  # alice is in S0ONCALL
    refused = await fake_slack.click(BOB, CHANNEL, parent.ts, ids.UNMUTE)
    await door.dispatcher.drained()

    assert [(c[0], c[1]) for c in door.actions.calls] == [("unmute", "finance-service")]
    assert "not allowed" in texts(refused)


async def test_acknowledge_shows_who_took_it_on_the_message(fake_slack: FakeSlack, slack_door: DoorFactory) -> None:
    door = await slack_door()
    await door.play(failed_rollback())
    parent = fake_slack.messages(CHANNEL)[0]

    await fake_slack.click(ALICE, CHANNEL, parent.ts, ids.ACKNOWLEDGE)
    await door.dispatcher.drained()
    await door.bot.drained()

    assert "acknowledged by <@U0ALICE>" in str(parent.blocks)
    assert ids.ACKNOWLEDGE not in str(parent.blocks)  # taken: the button is gone
    assert "<@U0ALICE> acknowledged rollback" in fake_slack.thread(CHANNEL, parent.ts)[-1].text


async def test_a_button_for_a_rollback_that_no_longer_exists_changes_nothing(
    fake_slack: FakeSlack, slack_door: DoorFactory
) -> None:
    door = await slack_door()
    rec = await door.play(failed_rollback())
    parent = fake_slack.messages(CHANNEL)[0]
    del door.records[rec.id]  # its Lease is gone

    d = await fake_slack.click(ALICE, CHANNEL, parent.ts, ids.RETRY)
    await door.dispatcher.drained()

    assert door.actions.calls == []
    assert f"Rollback `{rec.id}` no longer exists. Nothing changed." in texts(d)


async def test_an_unknown_button_gets_a_clear_answer_and_changes_nothing(
    fake_slack: FakeSlack, slack_door: DoorFactory
) -> None:
    door = await slack_door()
    posted = await door.bot.client.chat_postMessage(channel=CHANNEL, text="old", blocks=[
        {"type": "actions", "elements": [{"type": "button", "action_id": "rollback_frobnicate",
                                          "text": {"type": "plain_text", "text": "?"}, "value": "{}"}]}])

    d = await fake_slack.click(ALICE, CHANNEL, str(posted["ts"]), "rollback_frobnicate")
    await door.dispatcher.drained()

    assert door.actions.calls == []
    assert "unknown action 'rollback_frobnicate'" in texts(d) and "nothing changed" in texts(d)


@pytest.mark.parametrize("socket", [False, True], ids=["http", "socket-mode"])
async def test_the_mute_command_mutes_for_the_given_time_with_the_reason(
    fake_slack: FakeSlack, slack_door: DoorFactory, socket: bool
) -> None:
    door = await slack_door(socket=socket)

    d = await fake_slack.command(ALICE, CHANNEL, "mute payments 2h release freeze")
    await door.dispatcher.drained()

    [(name, target, kw)] = door.actions.calls
    assert (name, target, kw["until"], kw["reason"]) == ("mute", "payments", NOW + timedelta(hours=2),
                                                          "release freeze")
    assert "muted `payments` for 2 h by <@U0ALICE> from Slack: release freeze" in texts(d)
    assert fake_slack.messages(CHANNEL)[-1].text.startswith(":no_bell: muted `payments`")


@pytest.mark.parametrize(("text", "said"), [
    ("mute payments forever freeze", "'forever' is not a duration"),
    ("mute payments 2h", "`mute` needs a target, a duration and a reason"),
    ("mute nosuch 1h reason", "There is no target `nosuch`"),
    ("frobnicate the cluster", "I did not understand `frobnicate the cluster`"),
    ("unmute", "`unmute` needs one target"),
])
async def test_a_malformed_command_gets_a_clear_answer_and_changes_nothing(
    fake_slack: FakeSlack, slack_door: DoorFactory, text: str, said: str
) -> None:
    door = await slack_door()
    d = await fake_slack.command(ALICE, CHANNEL, text)
    await door.dispatcher.drained()
    assert door.actions.calls == []
    assert said in texts(d)
    assert fake_slack.messages(CHANNEL) == []


async def test_status_is_open_to_anyone_in_the_channel(fake_slack: FakeSlack, slack_door: DoorFactory) -> None:
    door = await slack_door()
    await door.play(successful_rollback())
    d = await fake_slack.command(BOB, CHANNEL, "status")
    assert "`finance-service`: last rollback `rb-20261127-030000-finance-service`: rolled back in 42 s" in texts(d)
    assert "`payments`: no rollback recorded" in texts(d)
    h = await fake_slack.command(BOB, CHANNEL, "history finance-service")
    assert "rb-20261127-030000-finance-service" in texts(h)


async def test_rollback_target_asks_for_confirmation_before_anything_changes(
    fake_slack: FakeSlack, slack_door: DoorFactory
) -> None:
    door = await slack_door()
    d = await fake_slack.command(ALICE, CHANNEL, "payments")
    await door.dispatcher.drained()
    assert door.actions.calls == []
    [answer] = d.answers
    assert "Roll back payments? Scale payments-v2 to 0 and payments-v1 to 3 in prod." in answer.text
    [button] = answer.blocks[-1]["elements"]
    assert button["action_id"] == ids.ROLLBACK_CONFIRMED and button["confirm"]["confirm"]["text"] == "Roll back"


async def test_a_refusal_by_the_actions_door_is_said_and_nothing_is_told_in_the_thread(
    fake_slack: FakeSlack, slack_door: DoorFactory
) -> None:
    door = await slack_door()
    await door.play(successful_rollback())
    parent = fake_slack.messages(CHANNEL)[0]
    before = len(fake_slack.thread(CHANNEL, parent.ts))
    door.actions.refuse = "another replica holds the Lease of finance-service"

    d = await fake_slack.click(ALICE, CHANNEL, parent.ts, ids.MUTE_1H)
    await door.dispatcher.drained()

    assert "Not done: another replica holds the Lease of finance-service" in texts(d)
    assert len(fake_slack.thread(CHANNEL, parent.ts)) == before


async def test_rollback_target_then_the_confirmed_button_rolls_it_back(
    fake_slack: FakeSlack, slack_door: DoorFactory
) -> None:
    door = await slack_door(socket=True)
    [confirm] = (await fake_slack.command(ALICE, CHANNEL, "payments")).answers

    d = await fake_slack.click(ALICE, CHANNEL, confirm.ts, ids.ROLLBACK_CONFIRMED)
    await door.dispatcher.drained()

    assert [(c[0], c[1]) for c in door.actions.calls] == [("rollback", "payments")]
    assert "rollback of `payments` started by <@U0ALICE> from Slack" in texts(d)
    assert fake_slack.messages(CHANNEL)[-1].text.startswith(":rewind: rollback of `payments` started")


@pytest.mark.parametrize("socket", [False, True], ids=["http", "socket-mode"])
async def test_slack_hears_the_acknowledgement_before_a_slow_action_finishes(
    fake_slack: FakeSlack, slack_door: DoorFactory, socket: bool
) -> None:
    """Slack gives up after 3 s: the door answers at once and works after."""
    door = await slack_door(socket=socket)
    door.actions.hold = asyncio.Event()  # the cluster is slow: the mute does not finish yet

    clicking = asyncio.create_task(fake_slack.command(ALICE, CHANNEL, "unmute payments"))
    await door.actions.started.wait()
    [delivery] = [r for r in fake_slack.requests if r.method == "deliver:slash_commands"]
    await fake_slack.wait_for(lambda: delivery.outcome == "acked")
    assert door.actions.calls == []  # acknowledged while the work is still under way
    door.actions.hold.set()
    d = await clicking

    assert d.acked and [(c[0], c[1]) for c in door.actions.calls] == [("unmute", "payments")]
    assert "unmuted `payments` by <@U0ALICE> from Slack" in texts(d)


@dataclass(frozen=True)
class Done:
    """The door's answer shape (receiver.actions.Done): its sentence and whether it wrote."""

    message: str
    changed: bool = True


async def test_unmuting_what_was_not_muted_is_said_privately_with_the_doors_words(
    fake_slack: FakeSlack, slack_door: DoorFactory
) -> None:
    door = await slack_door()
    door.actions.result = Done("payments had no run-time mute: nothing written", changed=False)
    d = await fake_slack.command(ALICE, CHANNEL, "unmute payments")
    assert [a.text for a in d.answers] == ["Nothing to do: payments had no run-time mute: nothing written"]
    assert fake_slack.messages(CHANNEL) == []  # nothing to tell the channel


async def test_a_rollback_from_slack_is_announced_at_once_and_its_outcome_told_when_done(
    fake_slack: FakeSlack, slack_door: DoorFactory
) -> None:
    door = await slack_door()
    door.actions.result = replace(successful_rollback()[-1][0], target="payments", id="rb-p")
    door.actions.hold = asyncio.Event()
    [confirm] = (await fake_slack.command(ALICE, CHANNEL, "payments")).answers
    d = await fake_slack.click(ALICE, CHANNEL, confirm.ts, ids.ROLLBACK_CONFIRMED)
    assert "rollback of `payments` started by <@U0ALICE> from Slack" in texts(d)  # before it finished
    door.actions.hold.set()
    await door.dispatcher.drained()
    assert fake_slack.ephemeral_for(ALICE)[-1].text == "Rollback `rb-p` of `payments`: rolled back in 42 s"
