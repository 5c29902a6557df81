"""The phase where people read it: the rollback record (Lease, GET /rollbacks) and Slack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from receiver.domain import messages
from receiver.domain.decisions import DecisionKind, TargetState, decide
from receiver.domain.rollback import RollbackRecord
from receiver.domain.settings import Config, load_config
from receiver.kube.lease.codec import ANN_RECORD, encode_record, record_from_lease
from receiver.rollback.executor import new_record
from tests.core.test_phase_decisions import NOW, TARGET, alert_payload, split

ROOT = Path(__file__).parent.parent.parent


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(ROOT / "config.yaml")


def week_1_record(config: Config) -> RollbackRecord:
    [d] = decide(alert_payload("HighErrorRate", "0.012"), config, {TARGET: split(1)}, NOW)
    return new_record(d, config.targets[0], config, NOW)


def test_the_rollback_record_carries_the_phase_it_was_decided_in(config: Config) -> None:
    record = week_1_record(config)
    assert record.rollout_phase == "week 1 (canary 1 of 5)"
    assert record.to_json()["rollout_phase"] == "week 1 (canary 1 of 5)"  # GET /rollbacks


def test_the_phase_survives_the_lease_and_old_records_without_it_still_parse(config: Config) -> None:
    record = week_1_record(config)
    lease = {"metadata": {"annotations": {ANN_RECORD: encode_record(record)}}}
    back = record_from_lease(lease)
    assert back is not None and back.rollout_phase == "week 1 (canary 1 of 5)"
    old = record.to_json()
    del old["rollout_phase"]  # written by a receiver before phases existed
    parsed = record_from_lease({"metadata": {"annotations": {ANN_RECORD: json.dumps(old)}}})
    assert parsed is not None and parsed.rollout_phase is None
    assert parsed.id == record.id


def test_the_slack_parent_message_shows_the_phase(config: Config) -> None:
    msg = messages.parent(week_1_record(config), config.targets[0]).payload()
    assert "in week 1 (canary 1 of 5)" in msg["text"]
    assert "*Phase:* week 1 (canary 1 of 5)" in json.dumps(msg["blocks"], ensure_ascii=False).replace("\\n", "\n")


def test_a_manual_rollback_has_no_phase_line(config: Config) -> None:
    record = new_record(None, config.targets[0], config, NOW, requested_by="jane")
    assert record.rollout_phase is None
    assert "Phase:" not in json.dumps(messages.parent(record, config.targets[0]).payload())


def test_a_warning_note_says_the_week_what_crossed_which_level_and_that_nothing_changed(config: Config) -> None:
    payload = alert_payload("ErrorRateWarningWeek1", "0.015", rollback="warn", severity="warning")
    alert = payload.alerts[0].model_copy(update={"annotations": {
        "value": "0.015", "threshold": "0.01",
        "summary": "finance-service v2: error rate 1.5% (> 1 % in week 1)"}})
    [d] = decide(payload.model_copy(update={"alerts": (alert,)}), config, {TARGET: split(1)}, NOW)
    assert d.kind is DecisionKind.WARNED
    msg = messages.decision_message(d, config.targets[0])
    assert msg is not None
    text = json.dumps(msg.payload(), ensure_ascii=False)
    assert "week 1 (canary 1 of 5)" in text
    assert "error rate 1.5% (&gt; 1 % in week 1)" in text  # escaped for Slack
    assert "level 0.01" in text
    assert "Nothing is changed for a warning" in text
    assert "Warning for finance-service (week 1 (canary 1 of 5)): ErrorRateWarningWeek1" in msg.payload()["text"]


def test_a_warning_while_the_canary_is_not_known_says_so(config: Config) -> None:
    payload = alert_payload("CPUUsageWarning", "0.75", rollback="warn")
    [d] = decide(payload, config, {TARGET: TargetState()}, NOW)
    msg = messages.decision_message(d, config.targets[0])
    assert msg is not None
    assert "unknown (canary replicas not known yet)" in msg.payload()["text"]



def test_a_record_written_by_a_newer_receiver_with_fields_this_one_lacks_still_parses(config: Config) -> None:
    data = {**week_1_record(config).to_json(), "recovery": {"outcome": "recovered"}}  # a later version's field
    parsed = record_from_lease({"metadata": {"annotations": {ANN_RECORD: json.dumps(data)}}})
    assert parsed is not None and parsed.rollout_phase == "week 1 (canary 1 of 5)"
