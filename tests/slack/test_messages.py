"""The Block Kit payloads: what people read, escaped, and within Slack's limits."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from receiver.domain import messages
from receiver.domain.decisions import AppliedMute, DecisionKind, MuteScope
from receiver.domain.rollback import Before, Phase, Progress, Recovery, RecoveryOutcome
from sim.slack import block_problems
from tests.fixtures.slack import T0, alert, decision, failed_rollback, record, slack_config, step, successful_rollback
from tests.slack.snapshot import assert_snapshot

CONFIG = slack_config()
FINANCE = CONFIG.targets[0]
HOSTILE = "<!channel> <http://evil.example|click here> & <@U123> >_<"


def texts(payload: Any) -> list[str]:
    """Every string Slack will render: the fallback text and each block's text."""
    out: list[str] = []
    if isinstance(payload, dict):
        for k, v in payload.items():
            if k == "text" and isinstance(v, str):
                out.append(v)
            else:
                out.extend(texts(v))
    elif isinstance(payload, list | tuple):
        for v in payload:
            out.extend(texts(v))
    return out


def assert_valid(msg: messages.SlackMessage) -> None:
    assert msg.text, "fallback text must always be set"
    assert block_problems(list(msg.blocks)) == []


# --- snapshots -----------------------------------------------------------------------


#: What the pre-flight read and the alert carried (receiver.rollback.steps / executor.new_record).
BEFORE = Before(stable_replicas=4, canary_replicas=1, stable_images=("registry.example.com/finance:1.4.2",),
                canary_images=("registry.example.com/finance:1.5.0", "registry.example.com/envoy:1.29"))
FULL = {"before": BEFORE, "alert_started_at": T0 - timedelta(minutes=2), "rollout_phase": "week 1 (canary 1 of 5)",
        "runbook_url": "https://wiki.example.com/runbooks/high-error-rate"}


def test_the_parent_message_reads_well_at_each_state_of_a_rollback() -> None:
    calls = successful_rollback(record(**FULL))
    states = {
        "parent_started": calls[0][0],
        "parent_scaling": calls[2][0],
        "parent_verifying": calls[4][0],
        "parent_succeeded": calls[-1][0],
        "parent_failed": failed_rollback(record(**FULL))[-1][0],
    }
    for name, rec in states.items():
        msg = messages.parent(rec, FINANCE)
        assert_valid(msg)
        assert_snapshot(name, msg.payload())


def test_the_thread_replies_tell_the_timeline_with_the_pods_that_were_not_ready() -> None:
    ok = successful_rollback()
    failed = failed_rollback()
    rec, st_ = ok[2]
    assert st_ is not None
    assert_snapshot("reply_scale_canary", messages.step_reply(rec, st_).payload())
    rec, st_ = failed[-1]
    assert st_ is not None
    msg = messages.step_reply(rec, st_)
    assert_valid(msg)
    assert "CrashLoopBackOff (restarts 5)" in str(msg.payload())
    assert_snapshot("reply_verify_failed", msg.payload())


def test_a_failure_broadcast_pages_the_on_call_mention_from_config() -> None:
    rec = failed_rollback()[-1][0]
    msg = messages.failure_broadcast(rec, "<!subteam^S0ONCALL>", FINANCE)
    assert_valid(msg)
    assert msg.text.startswith("<!subteam^S0ONCALL> ")  # the notification itself pages
    assert "scale deployment finance-service-v2 --replicas=0" in str(msg.payload())
    assert_snapshot("failure_broadcast", msg.payload())


def test_muted_dry_run_disabled_and_halted_decisions_say_what_would_have_happened() -> None:
    until = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    cases = {
        "decision_muted": decision(DecisionKind.MUTED, "muted: deploy freeze until the incident review",
                                   mute=AppliedMute(MuteScope.TARGET, "alice", "deploy freeze", until)),
        "decision_dry_run": decision(DecisionKind.DRY_RUN, "dry run: would have rolled back"),
        "decision_disabled": decision(DecisionKind.DISABLED, "receiver disabled in config"),
        "decision_halted": decision(DecisionKind.HALTED, "3 rollbacks of finance-service within an hour"),
    }
    for name, d in cases.items():
        msg = messages.decision_message(d, FINANCE, "<!here>")
        assert msg is not None
        assert_valid(msg)
        assert_snapshot(name, msg.payload())
    muted = messages.decision_message(cases["decision_muted"], FINANCE)
    assert muted is not None
    assert "muted by alice until 2026-11-27 18:00 UTC" in muted.text
    assert "would have rolled back finance-service" in muted.text


def test_a_manual_rollback_says_who_requested_it() -> None:
    rec = record(trigger="manual", requested_by="alice", reason="bad deploy, see INC-42", rule=None,
                 alertname=None, value=None, threshold=None, fingerprints=(), generator_url=None,
                 external_url=None)
    msg = messages.parent(rec, FINANCE)
    assert "manual rollback requested by alice: bad deploy, see INC-42" in msg.text
    assert_snapshot("parent_manual", msg.payload())


def test_the_parent_says_images_replicas_before_and_after_who_started_it_and_the_timings() -> None:
    rec = successful_rollback(record(**FULL))[-1][0]
    rec = replace(rec, recovery=Recovery(RecoveryOutcome.RECOVERED, "recovered", T0 - timedelta(minutes=2),
                                         300, 0.004, T0 + timedelta(minutes=6)))
    msg = messages.parent(rec, FINANCE)
    assert_valid(msg)
    shown = "\n".join(texts(msg.payload())).replace("&gt;", ">")
    assert "v1: `registry.example.com/finance:1.4.2`" in shown
    assert "v2: `registry.example.com/finance:1.5.0`, `registry.example.com/envoy:1.29`" in shown
    assert "`finance-service-v2` (canary) 1 → 0" in shown
    assert "`finance-service-v1` (stable) 4 → 5" in shown
    assert "*Started by*\nalert HighErrorRate" in shown
    assert "*Phase:* week 1 (canary 1 of 5)" in shown
    assert "HighErrorRate 7.2 % > 5 %" in shown
    # alert at 02:58:00; canary scaled at +0.5 s of the rollback, verified at +42 s, recovered at +6 min
    assert ("*Timings:* alert started 02:58:00 UTC → traffic off the canary +2 min → stable verified "
            "+2 min 42 s → recovery confirmed +8 min") in shown
    assert "<https://wiki.example.com/runbooks/high-error-rate|Runbook>" in shown  # the alert's, not the target's


def test_a_stable_first_rollback_lists_its_timings_in_the_order_they_happened() -> None:
    rec = successful_rollback(record(**FULL, order="stable-first"))[-1][0]
    steps = tuple(replace(s, at=T0 + timedelta(seconds=50)) if s.name == "scale-canary" else s for s in rec.steps)
    timed = messages.timings(replace(rec, steps=steps))
    assert timed == "alert started 02:58:00 UTC → stable verified +2 min 42 s → traffic off the canary +2 min 50 s"


def test_the_parent_says_which_person_started_a_rollback_and_through_which_door() -> None:
    for reason, who in (("requested by alice from the CLI", "alice from the CLI"),
                        ("requested by bob from Slack; overrides the active mute of x", "bob from Slack"),
                        ("bad deploy", "carol")):
        rec = record(trigger="manual", requested_by="carol" if who == "carol" else who.split()[0], reason=reason,
                     alertname=None, rule=None, value=None, threshold=None)
        assert f"*Started by*\n{who}" in str(messages.parent(rec, FINANCE).payload()["blocks"]).replace("\\n", "\n")


def test_a_missing_canary_is_said_instead_of_a_replica_change() -> None:
    rec = record(before=Before(stable_replicas=0, canary_replicas=None, stable_images=("img:1",)))
    shown = str(messages.parent(rec, FINANCE).payload())
    assert "(canary) missing: nothing to scale down" in shown
    assert "`finance-service-v1` (stable) 0 → 5" in shown
    assert "v2: _none_" in shown


def test_hostile_images_and_runbook_annotations_are_escaped() -> None:
    rec = record(before=Before(1, 1, (HOSTILE,), ("img:2",)), runbook_url="javascript:alert(1)")
    msg = messages.parent(rec, FINANCE)
    joined = "\n".join(texts(msg.payload()))
    assert "<!channel>" not in joined and "<@U123>" not in joined
    assert "javascript:" not in joined
    assert "<https://wiki.example.com/runbooks/finance-service#rollback|Runbook>" in joined  # the target's


def test_the_resolved_follow_up_says_how_long_after_the_rollback() -> None:
    rec = successful_rollback()[-1][0]
    assert rec.finished_at is not None
    resolved = decision(DecisionKind.RESOLVED, "resolved",
                        alerts=(alert("resolved", ends=rec.finished_at + timedelta(minutes=3)),))
    msg = messages.resolved_followup(resolved, rec)
    assert msg is not None
    assert msg.text == "HighErrorRate resolved 3 min after the rollback"
    assert_snapshot("resolved_followup", msg.payload())


# --- behaviour -----------------------------------------------------------------------


def test_the_state_line_walks_from_started_to_rolled_back() -> None:
    lines = [messages.describe_state(r) for r, _ in successful_rollback()]
    assert lines[0] == "started"
    assert "scaling" in lines
    assert "verifying (4/5 ready)" in lines
    assert lines[-1] == "rolled back in 42 s"
    assert messages.describe_state(failed_rollback()[-1][0]).startswith("failed after 5 min: verification timed out")


def test_the_why_shows_the_value_against_the_threshold_in_the_rule_unit() -> None:
    assert messages.describe_why(record()) == "HighErrorRate 7.2 % > 5 % (rule error-rate)"
    p95 = record(alertname="HighLatencyP95", rule="p95-latency", value=1.234, threshold=1.0, unit="seconds")
    assert messages.describe_why(p95) == "HighLatencyP95 1234 ms > 1000 ms (rule p95-latency)"


def test_decisions_that_change_nothing_post_nothing() -> None:
    for kind in (DecisionKind.ROLL_BACK, DecisionKind.IN_PROGRESS, DecisionKind.ALREADY_ROLLED_BACK,
                 DecisionKind.NO_RULE_MATCHED):
        assert messages.decision_message(decision(kind, "x"), FINANCE) is None


def test_no_follow_up_for_a_resolved_alert_without_a_rollback_or_from_a_later_episode() -> None:
    rec = successful_rollback()[-1][0]
    assert messages.resolved_followup(decision(DecisionKind.RESOLVED, alerts=(alert("resolved"),)), None) is None
    later = alert("resolved", ends=T0 + timedelta(hours=3)).model_copy(
        update={"starts_at": T0 + timedelta(hours=2), "fingerprint": "ffff0000ffff0000"})
    assert messages.resolved_followup(decision(DecisionKind.RESOLVED, alerts=(later,)), rec) is None


def test_hostile_alert_text_cannot_ping_the_channel_or_forge_a_link() -> None:
    hostile_step = step("verify", HOSTILE, 3.0, ok=False)
    rec = replace(record(alertname=HOSTILE, reason=HOSTILE, rule=None, value=None, threshold=None,
                         generator_url="http://evil.example|Runbook", error=HOSTILE,
                         progress=Progress(stable_ready=1, not_ready=(HOSTILE,)), phase=Phase.FAILED,
                         finished_at=T0 + timedelta(seconds=5)).with_step(hostile_step))
    rendered = [
        messages.parent(rec, FINANCE),
        messages.step_reply(rec, hostile_step),
        messages.failure_broadcast(rec, "", FINANCE),
        messages.decision_message(decision(DecisionKind.MUTED, HOSTILE, alertname=HOSTILE,
                                           alerts=(alert(alertname=HOSTILE),),
                                           mute=AppliedMute(MuteScope.TARGET, HOSTILE, HOSTILE, None)), FINANCE),
        messages.resolved_followup(decision(DecisionKind.RESOLVED, alertname=HOSTILE,
                                            alerts=(alert("resolved", alertname=HOSTILE),)), rec),
    ]
    for msg in rendered:
        assert msg is not None
        assert_valid(msg)
        for text in texts(msg.payload()):
            assert "<!channel>" not in text and "<@U123>" not in text
            assert "<http://evil.example|click here>" not in text
            for token in re.findall(r"<[^>]*>", text):  # every remaining <...> is one of ours
                assert token.startswith(("<!date^", "<https://", "<http://alertmanager", "<http://prometheus",
                                         "<http://evil.example%7C"))
        assert "&lt;!channel&gt;" in str(msg.payload())
    assert "<http://evil.example%7CRunbook|Source graph>" in str(messages.parent(rec, FINANCE).payload())


def test_only_http_links_are_rendered() -> None:
    rec = record(generator_url="javascript:alert(1)", external_url="file:///etc/passwd")
    payload = str(messages.parent(rec, FINANCE).payload())
    assert "javascript:" not in payload and "file:" not in payload


def test_huge_values_are_clipped_to_slack_limits_without_breaking_an_escape() -> None:
    many_pods = tuple(f"finance-service-v1-{i:05d}: CrashLoopBackOff & <oom>" for i in range(500))
    rec = record(stable="v1-" + "x" * 300, error="<&>" * 5000, phase=Phase.FAILED,
                 finished_at=T0 + timedelta(seconds=9), progress=Progress(not_ready=many_pods))
    for msg in (messages.parent(rec, FINANCE), messages.failure_broadcast(rec, "<!here>", FINANCE),
                messages.step_reply(rec, step("verify", "&" * 10_000, 9.0, ok=False))):
        assert_valid(msg)
        assert len(msg.text) <= messages.MAX_TEXT
        for text in texts(msg.payload()):
            assert not re.search(r"&[a-z]{0,3}…", text), "an entity was cut in half"
    assert "and 492 more" in str(messages.parent(rec, FINANCE).payload())


@given(st.lists(st.sampled_from(["a", "&", "<", ">", " ", "é", "\n", "`"]), max_size=200).map("".join),
       st.integers(min_value=2, max_value=250))
def test_clipping_never_splits_an_entity_or_a_link(raw: str, limit: int) -> None:
    text = messages.esc(raw) + " " + messages.link("https://example.com/?a=1&b=2", "dash <x>")  # type: ignore[operator]
    out = messages.clip(text, limit)
    assert len(out) <= max(limit, 1)
    body = out.removesuffix("…")
    assert body.count("<") == body.count(">")
    assert re.fullmatch(r"([^&]|&amp;|&lt;|&gt;)*", body), out


def test_durations_read_the_way_people_say_them() -> None:
    assert [messages.duration(s) for s in (0.4, 2.0, 42.3, 180, 3900)] == ["0.4 s", "2 s", "42 s", "3 min",
                                                                            "1 h 5 min"]
