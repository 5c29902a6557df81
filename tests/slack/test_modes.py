"""The other delivery modes and how make_notifier picks one: webhook, console, off, fallbacks."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from receiver.domain.decisions import AppliedMute, DecisionKind, MuteScope
from receiver.domain.rollback import Before
from receiver.domain.settings import SlackSettings
from receiver.notify.console import ConsoleNotifier
from receiver.notify.factory import NullNotifier, SlackBotNotifier, SlackWebhookNotifier, make_notifier
from sim.slack import FakeSlack
from tests.fixtures.slack import (
    FAST,
    T0,
    LogWatch,
    alert,
    decision,
    failed_rollback,
    record,
    slack_config,
    step,
    successful_rollback,
)
from tests.slack.test_conversation import play

FINANCE = slack_config().targets[0]


async def test_webhook_mode_posts_one_message_per_event_that_matters(fake_slack: FakeSlack) -> None:
    cfg = slack_config(mode="webhook")
    n = make_notifier(cfg.slack, {"SLACK_WEBHOOK_URL": fake_slack.webhook_url}, config=lambda: cfg, policy=FAST)
    assert isinstance(n, SlackWebhookNotifier)
    await n.start()
    try:
        await play(n, successful_rollback())
        await play(n, failed_rollback(record(id="rb-2")))
        bob = AppliedMute(MuteScope.GLOBAL, "bob", "freeze", None)
        n.decision(decision(DecisionKind.MUTED, "muted", mute=bob), FINANCE)
        await n.drained()
    finally:
        await n.close(1.0)
    texts = [m.text.split(":")[0] for m in fake_slack.messages("#rollbacks")]
    assert texts == [
        "⏪ Rolling back finance-service",  # start
        "✅ finance-service rolled back to finance-service-v1",  # outcome
        "⏪ Rolling back finance-service",
        "Failed",  # the failed step
        "<!subteam^S0ONCALL> Rollback of finance-service failed after 5 min",  # outcome, paging
        "Muted",
    ]
    assert all(m.via == "webhook" for m in fake_slack.messages("#rollbacks"))


async def test_webhook_errors_are_logged_with_what_to_fix(fake_slack: FakeSlack,
                                                          log_watch: LogWatch) -> None:
    settings = SlackSettings(mode="webhook")
    n = make_notifier(settings, {"SLACK_WEBHOOK_URL": fake_slack.webhook_url}, policy=FAST)
    await n.start()
    fake_slack.fail_next("webhook", status=404, error="no_service")
    await play(n, successful_rollback()[:1])
    await n.close(1.0)
    [refused] = [e for e in log_watch.entries if e["event"] == "slack_down"]  # lasting: a revoked URL
    assert refused["error"] == "no_service"
    assert "environment variable SLACK_WEBHOOK_URL" in refused["fix"]
    assert "fakewebhooksecret" not in repr(log_watch.entries)


async def test_console_mode_prints_the_conversation_readably() -> None:
    out = io.StringIO()
    n = ConsoleNotifier(slack_config(mode="console").slack,
                        console=Console(file=out, width=140, color_system=None, highlight=False))
    await n.start()
    await play(n, successful_rollback())
    await play(n, failed_rollback(record(id="rb-2", alertname="[bold red]<!channel>[/]")))
    n.decision(decision(DecisionKind.DRY_RUN, "dry run: nothing changed"), FINANCE)
    await n.drained()
    await n.close(1.0)
    text = out.getvalue()
    assert "⏪ rolling back finance-service  HighErrorRate 7.2 % > 5 % (rule error-rate)" in text
    assert "✓ scale-canary" in text and "finance-service-v2 scaled 1 -> 0 (took 0.4 s)" in text
    assert "⏳ finance-service  verifying (4/5 ready)" in text
    assert "✅ finance-service  rolled back in 42 s" in text
    assert "not ready: finance-service-v1-7d9f8-aaaaa: CrashLoopBackOff (restarts 5)" in text
    assert "📣 would page <!subteam^S0ONCALL> in Slack" in text
    assert "[bold red]<!channel>[/]" in text  # alert text is shown, never interpreted as markup
    assert "🧪 finance-service  Dry run: would have rolled back finance-service" in text


async def test_make_notifier_reads_the_bot_token_from_a_file(tmp_path: Path, fake_slack: FakeSlack) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("xoxb-test-token\n")
    settings = SlackSettings(mode="bot", api_url=fake_slack.api_url, token_file=token_file)
    n = make_notifier(settings, {})
    assert isinstance(n, SlackBotNotifier)
    await n.start()
    await play(n, successful_rollback()[:1])
    await n.close(1.0)
    assert fake_slack.calls("auth.test")[0].outcome == "ok"
    assert len(fake_slack.messages("#rollbacks")) == 1


async def test_off_mode_accepts_every_call_and_does_nothing() -> None:
    n = make_notifier(SlackSettings(mode="off"))
    assert isinstance(n, NullNotifier)
    await n.start()
    n.rollback_changed(record(), None)
    n.decision(decision(DecisionKind.RESOLVED, alerts=(alert("resolved"),)), FINANCE)
    await n.close(0.1)


def _with_preflight(calls: list[Any], before: Before) -> list[Any]:
    """The executor's calls with the pre-flight step it makes before the order (images read)."""
    first, _ = calls[0]
    pre = step("preflight", "finance-service-v1 has 4 replicas, 4 Ready; finance-service-v2 has 1 replicas", 0.05)
    rec = replace(first.with_step(pre), before=before)
    return [calls[0], (rec, pre),
            *[(replace(r, before=before, steps=(pre, *r.steps)), s) for r, s in calls[1:]]]


BEFORE = Before(4, 1, ("registry.example.com/finance:1.4.2",), ("registry.example.com/finance:1.5.0",))


async def test_console_mode_shows_the_images_and_the_timings_from_the_alerts_start() -> None:
    out = io.StringIO()
    n = ConsoleNotifier(slack_config(mode="console").slack,
                        console=Console(file=out, width=200, color_system=None, highlight=False))
    await n.start()
    rec = record(alert_started_at=T0 - timedelta(minutes=2))
    await play(n, _with_preflight(successful_rollback(rec), BEFORE))
    await n.close(1.0)
    text = out.getvalue()
    assert ("finance-service-v1 registry.example.com/finance:1.4.2 · finance-service-v2 "
            "registry.example.com/finance:1.5.0") in text
    assert "alert started 02:58:00 UTC → traffic off the canary +2 min → stable verified +2 min 42 s" in text


async def test_webhook_mode_posts_the_same_parent_with_images_and_replicas_before_and_after(
    fake_slack: FakeSlack,
) -> None:
    cfg = slack_config(mode="webhook")
    n = make_notifier(cfg.slack, {"SLACK_WEBHOOK_URL": fake_slack.webhook_url}, config=lambda: cfg, policy=FAST)
    await n.start()
    try:
        await play(n, _with_preflight(successful_rollback(record(alert_started_at=T0 - timedelta(minutes=2))),
                                      BEFORE))
    finally:
        await n.close(1.0)
    outcome = next(m for m in fake_slack.messages("#rollbacks") if "rolled back to" in m.text)
    blocks = str(outcome.blocks)
    assert "v2: `registry.example.com/finance:1.5.0`" in blocks
    assert "`finance-service-v1` (stable) 4 → 5" in blocks
    assert "*Timings:* alert started 02:58:00 UTC" in blocks
