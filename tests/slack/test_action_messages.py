"""Buttons and link buttons on the messages: what the on-call can click, within Slack's limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from urllib.parse import unquote

from receiver.domain import messages
from receiver.domain.decisions import AppliedMute, DecisionKind, MuteScope
from sim.slack import block_problems
from tests.fixtures.slack import T0, decision, failed_rollback, slack_config, successful_rollback
from tests.slack.snapshot import assert_snapshot

FINANCE = slack_config().targets[0]
AM = "https://alertmanager.example.com"
ACTING = messages.Extras(actions=True, alertmanager_url=AM)


def buttons(msg: messages.SlackMessage) -> dict[str, dict[str, object]]:
    return {e["action_id"]: e for b in msg.blocks if b["type"] == "actions" for e in b["elements"]}


def valid(msg: messages.SlackMessage) -> messages.SlackMessage:
    assert msg.text and block_problems(list(msg.blocks)) == []
    return msg


def test_the_parent_with_actions_reads_well_and_stays_within_slacks_limits() -> None:
    cases = {
        "parent_actions_started": messages.parent(successful_rollback()[0][0], FINANCE, ACTING),
        "parent_actions_failed": messages.parent(failed_rollback()[-1][0], FINANCE, ACTING),
        "parent_actions_acknowledged": messages.parent(
            failed_rollback()[-1][0], FINANCE, replace(ACTING, acked_by="U0ALICE")),
        "confirm_rollback": messages.confirm_rollback(FINANCE),
    }
    for name, msg in cases.items():
        assert_snapshot(name, valid(msg).payload())


def test_a_failed_rollback_offers_retry_behind_a_confirm_dialog() -> None:
    b = buttons(valid(messages.parent(failed_rollback()[-1][0], FINANCE, ACTING)))
    assert list(b) == ["rollback_link_runbook", "rollback_link_graph", "rollback_link_dashboard",
                       "rollback_link_silence", "rollback_mute_1h", "rollback_unmute", "rollback_retry",
                       "rollback_ack"]
    assert b["rollback_retry"]["confirm"]["text"]["text"] == (  # type: ignore[index]
        "Scale finance-service-v2 to 0 and finance-service-v1 to 5 in prod.")


def test_once_acknowledged_the_message_says_who_and_drops_the_button() -> None:
    msg = valid(messages.parent(failed_rollback()[-1][0], FINANCE, replace(ACTING, acked_by="U0ALICE")))
    assert "acknowledged by <@U0ALICE>" in str(msg.blocks)
    assert "rollback_ack" not in buttons(msg)


def test_without_slack_actions_the_links_are_plain_links_and_nothing_is_a_button() -> None:
    """A link button's click is an interaction: without an endpoint Slack would show an error."""
    target = FINANCE.model_copy(update={"dashboard_url": "https://grafana.example.com/d/f?from={from}&to={to}"})
    msg = valid(messages.parent(failed_rollback()[-1][0], target, messages.Extras(alertmanager_url=AM)))
    assert buttons(msg) == {}
    shown = str(msg.blocks)
    assert "|Runbook>" in shown and "|Prometheus graph>" in shown and "|Silence in Alertmanager>" in shown
    assert "{from}" not in shown


def test_the_dashboard_link_covers_the_incident_with_a_margin() -> None:
    target = FINANCE.model_copy(update={"dashboard_url": "https://grafana.example.com/d/f?from={from}&to={to}"})
    rec = successful_rollback()[-1][0]
    url = buttons(messages.parent(rec, target, ACTING))["rollback_link_dashboard"]["url"]
    start = int((T0 - timedelta(minutes=15)).timestamp() * 1000)
    assert rec.finished_at is not None
    end = int((rec.finished_at + timedelta(minutes=15)).timestamp() * 1000)
    assert url == f"https://grafana.example.com/d/f?from={start}&to={end}"
    running = buttons(messages.parent(successful_rollback()[0][0], target, ACTING))["rollback_link_dashboard"]
    assert str(running["url"]).endswith("&to=now")


def test_the_silence_link_is_prefilled_with_the_alert_and_the_targets_labels() -> None:
    url = str(buttons(messages.parent(failed_rollback()[-1][0], FINANCE, ACTING))["rollback_link_silence"]["url"])
    assert url.startswith(f"{AM}/#/silences/new?filter=")
    assert unquote(url.split("filter=")[1]) == '{alertname="HighErrorRate",service="finance-service"}'


def test_a_muted_note_offers_unmute_and_a_halted_note_roll_back_anyway_with_a_confirm() -> None:
    mute = AppliedMute(MuteScope.TARGET, "alice", "digging in", None)
    muted = valid(messages.decision_message(decision(DecisionKind.MUTED, "muted", mute=mute), FINANCE, "",
                                            ACTING))  # type: ignore[arg-type]
    halted = valid(messages.decision_message(decision(DecisionKind.HALTED, "3 rollbacks in an hour"), FINANCE,
                                             "", ACTING))  # type: ignore[arg-type]
    assert list(buttons(muted)) == ["rollback_unmute"]
    assert list(buttons(halted)) == ["rollback_anyway"]
    assert "confirm" in buttons(halted)["rollback_anyway"]
    assert_snapshot("decision_muted_actions", muted.payload())
    assert_snapshot("decision_halted_actions", halted.payload())
    plain = messages.decision_message(decision(DecisionKind.MUTED, "muted", mute=mute), FINANCE)
    assert plain is not None and not buttons(plain)  # webhook and console: no buttons


def test_a_breaker_open_note_gets_close_breaker() -> None:
    [block] = messages.note_buttons("breaker_open", FINANCE, None, ACTING)
    assert [e["action_id"] for e in block["elements"]] == ["rollback_close_breaker"]
    assert block_problems([block]) == []


def test_an_over_long_button_is_refused_by_the_fake_as_by_slack() -> None:
    long = messages.action_button("x", "y", "v")
    long["text"]["text"] = "z" * 76
    assert block_problems([{"type": "actions", "elements": [long]}])


def test_a_note_links_the_alerts_own_runbook_before_the_targets() -> None:
    from tests.fixtures.slack import alert

    own = alert()
    own = own.model_copy(update={"annotations": {**own.annotations, "runbook_url": "https://runbooks.example.com/hi"}})
    note = messages.decision_message(decision(DecisionKind.DRY_RUN, "dry", alerts=(own,)), FINANCE)
    assert note is not None and "<https://runbooks.example.com/hi|Runbook>" in str(note.blocks)
    fallback = messages.decision_message(decision(DecisionKind.DRY_RUN, "dry"), FINANCE)
    assert fallback is not None and "runbooks/finance-service#rollback|Runbook>" in str(fallback.blocks)
