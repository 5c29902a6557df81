"""Delivery when Slack misbehaves: rate limits, errors, outages, hangs; the caller never waits."""

from __future__ import annotations

from dataclasses import replace

from receiver.domain.settings import SlackSettings
from receiver.notify.factory import make_notifier
from sim.slack import FakeSlack
from tests.fixtures.slack import FAST, BotFactory, LogWatch, record, successful_rollback
from tests.slack.test_conversation import play


async def test_a_rate_limited_post_is_retried_after_retry_after(fake_slack: FakeSlack, slack_bot: BotFactory) -> None:
    n = await slack_bot()
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=0)
    await play(n, successful_rollback()[:1])
    assert [r.outcome for r in fake_slack.calls("chat.postMessage")] == ["429", "ok"]
    assert len(fake_slack.messages("#finance-alerts")) == 1


async def test_a_server_error_is_retried(fake_slack: FakeSlack, slack_bot: BotFactory) -> None:
    n = await slack_bot()
    calls = successful_rollback()
    await play(n, calls[:1])
    fake_slack.fail_next("chat.update", status=500)
    await play(n, calls[1:3])
    assert [r.outcome for r in fake_slack.calls("chat.update")] == ["500", "ok"]
    [parent] = fake_slack.messages("#finance-alerts")
    assert parent.text.endswith("State: scaling")


async def test_a_slack_outage_never_blocks_the_caller_and_messages_arrive_when_slack_is_back(
    fake_slack: FakeSlack, slack_bot: BotFactory, log_watch: LogWatch
) -> None:
    n = await slack_bot()
    await log_watch.wait_for("slack_bot_ready")
    unreachable = n.metrics.value("receiver_slack_messages_total", method="conversations.list", result="unreachable")
    await fake_slack.stop()

    for rec, st in successful_rollback():
        n.rollback_changed(rec, st)
    # the calls returned before any delivery was even tried: the rollback goes on at its own pace
    assert not log_watch.find("slack_retry")

    await log_watch.wait_for("slack_retry")
    # the first call of a new rollback looks for an earlier parent (conversations.list, then .history)
    assert n.metrics.value(
        "receiver_slack_messages_total", method="conversations.list", result="unreachable") > unreachable
    await fake_slack.start()  # same port
    [parent] = await fake_slack.wait_for(lambda: fake_slack.messages("#finance-alerts"))
    await n.drained()
    assert "rolled back in 42 s" in parent.text  # posted late, showing the latest state
    assert len(fake_slack.thread("#finance-alerts", parent.ts)) == 4


async def test_when_slack_stays_down_the_loss_is_logged_and_the_rollback_is_posted_once_it_is_back(
    fake_slack: FakeSlack, slack_bot: BotFactory, log_watch: LogWatch
) -> None:
    n = await slack_bot(policy=replace(FAST, give_up_after=0.1))
    await log_watch.wait_for("slack_bot_ready")
    await fake_slack.stop()
    calls = successful_rollback()
    for rec, st in calls[:3]:
        n.rollback_changed(rec, st)
    await n.drained()
    lost = log_watch.find("slack_message_lost")
    assert lost and lost[0]["rollback_id"] == calls[0][0].id and lost[0]["target"] == "finance-service"
    assert "Rolling back finance-service" in lost[0]["text"]

    await fake_slack.start()
    await play(n, calls[3:])
    [parent] = fake_slack.messages("#finance-alerts")
    assert "rolled back in 42 s" in parent.text
    assert len(fake_slack.thread("#finance-alerts", parent.ts)) == 4  # no step is lost for good


async def test_a_parent_post_whose_answer_is_lost_is_found_and_continued_never_repeated(
    fake_slack: FakeSlack, slack_bot: BotFactory, log_watch: LogWatch
) -> None:
    n = await slack_bot(timeout_seconds=0.3)
    await log_watch.wait_for("slack_bot_ready")
    fake_slack.fail_next("chat.postMessage", hang=True)  # lands, but the answer never comes
    await play(n, successful_rollback())

    parents = [c for c in fake_slack.calls("chat.postMessage") if "Rolling back" in c.body["text"]]
    assert len(parents) == 1  # never re-posted
    [parent] = fake_slack.messages("#finance-alerts")  # one parent, no second ✅ message
    assert parent.text.startswith("✅ finance-service rolled back") and "rolled back in 42 s" in parent.text
    replies = [r.text.split(":")[0] for r in fake_slack.thread("#finance-alerts", parent.ts)]
    assert replies == ["order", "scale-canary", "scale-stable", "verify"]
    assert log_watch.find("slack_call_timed_out")
    assert log_watch.find("slack_thread_found")


async def test_slack_errors_are_logged_with_what_to_fix(
    fake_slack: FakeSlack, slack_bot: BotFactory, log_watch: LogWatch
) -> None:
    n = await slack_bot()
    fake_slack.fail_next("chat.postMessage", error="not_in_channel")
    await play(n, successful_rollback()[:1])
    [refused] = log_watch.find("slack_down")  # lasting until someone invites the bot
    assert refused["error"] == "not_in_channel"
    assert refused["fix"] == "invite the bot to #finance-alerts: /invite @<bot name> in that channel"
    assert refused["rollback_id"] == successful_rollback()[0][0].id

    await play(n, successful_rollback()[1:2])  # the parent never landed: the next change posts it
    assert len(fake_slack.messages("#finance-alerts")) == 1


async def test_an_unknown_channel_and_a_bad_token_say_what_to_fix(
    fake_slack: FakeSlack, slack_bot: BotFactory, log_watch: LogWatch
) -> None:
    n = await slack_bot(token="xoxb-wrong", default_channel="#nowhere")
    await play(n, [(record(target="payments", stable="p1", canary="p2"), None)])
    auth = [e for e in log_watch.entries if e.get("error") == "invalid_auth"]
    assert auth and "environment variable SLACK_BOT_TOKEN" in auth[0]["fix"]
    assert "xoxb-wrong" not in repr(log_watch.entries)

    n = await slack_bot(default_channel="#nowhere")
    await play(n, [(record(target="payments", stable="p1", canary="p2"), None)])
    [missing] = [e for e in log_watch.find("slack_down") if e.get("error") == "channel_not_found"]
    assert "#nowhere" in missing["fix"]


async def test_a_full_queue_drops_and_counts_instead_of_blocking(fake_slack: FakeSlack) -> None:
    settings = SlackSettings(mode="bot", api_url=fake_slack.api_url, queue_size=2)
    n = make_notifier(settings, {"SLACK_BOT_TOKEN": "xoxb-test-token"})  # not started: nothing drains
    dropped = n.metrics.value("receiver_slack_dropped_total")
    for rec, st in successful_rollback()[:3]:
        n.rollback_changed(rec, st)
    assert n.metrics.value("receiver_slack_dropped_total") == dropped + 1
    await n.close(0.1)  # never started: what is queued is logged as lost and counted
    assert n.metrics.value("receiver_slack_dropped_total") == dropped + 3


async def test_close_delivers_what_is_queued_within_its_timeout(fake_slack: FakeSlack, slack_bot: BotFactory) -> None:
    n = await slack_bot()
    for rec, st in successful_rollback():
        n.rollback_changed(rec, st)
    await n.close(2.0)
    [parent] = fake_slack.messages("#finance-alerts")
    assert len(fake_slack.thread("#finance-alerts", parent.ts)) == 4
