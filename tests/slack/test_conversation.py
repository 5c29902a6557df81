"""The rollback conversation as people see it in Slack: real slack-sdk against the fake over HTTP."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from receiver.domain.decisions import AppliedMute, DecisionKind, MuteScope
from receiver.domain.rollback import RollbackRecord, Step
from receiver.domain.settings import Mute
from sim.slack import FakeSlack
from tests.fixtures.slack import (
    TOKEN,
    BotFactory,
    LogWatch,
    alert,
    decision,
    failed_rollback,
    record,
    slack_config,
    successful_rollback,
)

FINANCE = slack_config().targets[0]
PAYMENTS = slack_config().targets[1]


async def play(notifier: Any, calls: list[tuple[RollbackRecord, Step | None]]) -> None:
    """Feed the executor's calls one at a time, letting each reach Slack (as in real life)."""
    for rec, st in calls:
        notifier.rollback_changed(rec, st)
        await notifier.drained()


async def test_a_rollback_is_one_parent_updated_in_place_with_its_timeline_in_the_thread(
    fake_slack: FakeSlack, slack_bot: BotFactory, log_watch: LogWatch
) -> None:
    threads: list[tuple[str, str, str]] = []

    async def on_thread(rollback_id: str, channel: str, ts: str) -> None:
        threads.append((rollback_id, channel, ts))

    n = await slack_bot(on_thread=on_thread)
    calls = successful_rollback()
    await play(n, calls)

    [parent] = fake_slack.messages("#finance-alerts")  # the target's own channel
    assert fake_slack.messages("#rollbacks") == []
    assert threads == [(calls[0][0].id, "C0FINANCE", parent.ts)]
    assert parent.text.startswith("✅ finance-service rolled back to finance-service-v1")
    assert "rolled back in 42 s" in parent.text
    states = [u["text"].split("State: ")[1] for u in parent.updates]
    assert states == ["scaling", "verifying (4/5 ready)", "rolled back in 42 s"]
    replies = fake_slack.thread("#finance-alerts", parent.ts)
    assert [r.text.split(":")[0] for r in replies] == ["order", "scale-canary", "scale-stable", "verify"]
    assert not any(r.reply_broadcast for r in replies)
    posts = fake_slack.calls("chat.postMessage")
    assert all(p.authorization == f"Bearer {TOKEN}" for p in posts)
    assert all(p.body["unfurl_links"] is False for p in posts)


async def test_a_failure_is_broadcast_to_the_channel_with_the_on_call_mention(
    fake_slack: FakeSlack, slack_bot: BotFactory
) -> None:
    n = await slack_bot()
    await play(n, failed_rollback())

    parent, broadcast = fake_slack.messages("#finance-alerts")
    assert parent.text.startswith("❌ Rollback of finance-service failed")
    assert broadcast.reply_broadcast and broadcast.thread_ts == parent.ts
    assert broadcast.text.startswith("<!subteam^S0ONCALL> Rollback of finance-service failed after 5 min")
    assert "CrashLoopBackOff" in str(broadcast.blocks)
    thread = fake_slack.thread("#finance-alerts", parent.ts)
    assert thread[-1] is broadcast
    assert [r.text for r in thread[:-1]][-1].startswith("Failed: verify")


async def test_a_rollback_resumed_after_a_restart_continues_the_same_message_and_thread(
    fake_slack: FakeSlack, slack_bot: BotFactory
) -> None:
    calls = successful_rollback()
    first = await slack_bot()
    await play(first, calls[:3])
    [parent] = fake_slack.messages("#finance-alerts")
    await first.close(1.0)

    second = await slack_bot()  # a new receiver: the record carries the thread, from the Lease
    resumed = [(replace(rec, slack_channel=parent.channel, slack_ts=parent.ts), st) for rec, st in calls[3:]]
    await play(second, resumed)

    assert fake_slack.messages("#finance-alerts") == [parent]
    assert "rolled back in 42 s" in parent.text
    replies = [r.text.split(":")[0] for r in fake_slack.thread("#finance-alerts", parent.ts)]
    assert replies == ["order", "scale-canary", "scale-stable", "verify"]


async def test_targets_without_a_channel_post_to_the_default_channel(
    fake_slack: FakeSlack, slack_bot: BotFactory
) -> None:
    n = await slack_bot()
    rec = record(target="payments", stable="payments-v1", canary="payments-v2", replicas=3)
    await play(n, [(rec, None)])
    assert [m.text.split(":")[0] for m in fake_slack.messages("#rollbacks")] == ["⏪ Rolling back payments"]


async def test_muted_and_dry_run_decisions_post_a_short_note(
    fake_slack: FakeSlack, slack_bot: BotFactory
) -> None:
    n = await slack_bot()
    muted_target = FINANCE.model_copy(update={"mute": Mute(reason="planned load test", by="alice")})
    n.decision(decision(DecisionKind.MUTED, "finance-service muted by alice (planned load test): ...",
                        mute=AppliedMute(MuteScope.TARGET, "alice", "planned load test", None)), muted_target)
    n.decision(decision(DecisionKind.DRY_RUN, "dry run"), FINANCE)
    n.decision(decision(DecisionKind.ALREADY_ROLLED_BACK, "already on stable"), FINANCE)
    await n.drained()
    muted, dry = fake_slack.messages("#finance-alerts")
    assert muted.text.startswith("Muted: would have rolled back finance-service")
    assert "muted by alice until unmuted: planned load test" in muted.text
    assert dry.text.startswith("Dry run: would have rolled back finance-service")


async def test_a_resolved_alert_is_followed_up_in_the_rollback_thread(
    fake_slack: FakeSlack, slack_bot: BotFactory
) -> None:
    n = await slack_bot()
    calls = successful_rollback()
    await play(n, calls)
    final = calls[-1][0]
    assert final.finished_at is not None
    resolved = decision(DecisionKind.RESOLVED, "resolved",
                        alerts=(alert("resolved", ends=final.finished_at + timedelta(minutes=3)),))
    n.decision(resolved, FINANCE, calls[0][0])  # the service may hand over an older copy of the record
    n.decision(resolved, FINANCE, calls[0][0])  # a repeat says nothing new
    await n.drained()

    [parent] = fake_slack.messages("#finance-alerts")
    follow_up = fake_slack.thread("#finance-alerts", parent.ts)[-1]
    assert follow_up.text == "HighErrorRate resolved 3 min after the rollback"
    assert len(fake_slack.thread("#finance-alerts", parent.ts)) == 5


async def test_a_manual_rollback_gets_the_same_conversation_naming_who_ran_it(
    fake_slack: FakeSlack, slack_bot: BotFactory
) -> None:
    n = await slack_bot()
    manual = record(trigger="manual", requested_by="alice", reason="bad deploy", rule=None, alertname=None,
                    value=None, threshold=None)
    await play(n, successful_rollback(manual))
    [parent] = fake_slack.messages("#finance-alerts")
    assert "manual rollback requested by alice: bad deploy" in parent.text
    assert len(fake_slack.thread("#finance-alerts", parent.ts)) == 4
