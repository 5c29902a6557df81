"""What Prometheus' answers mean for a decision and for a recovery: pure, no I/O.

before_acting turns a roll_back into not_canary only on a clear "the stable crossed
too"; every other answer (no series, NaN, an error, no expression) acts as today and
says why. RecoveryTracker confirms recovery only after a full window of healthy
readings, and ends with a clear outcome for NaN, +Inf, no series or silence.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receiver.domain.alerts import parse_payload
from receiver.domain.canary_check import StableCheck, before_acting, last_replicas_change
from receiver.domain.decisions import Decision, DecisionKind, decide
from receiver.domain.messages import not_canary_message, recovery_reply
from receiver.domain.readings import judge
from receiver.domain.recovery import RecoveryTracker
from receiver.domain.rollback import Phase, Recovery, RecoveryOutcome, RollbackRecord
from receiver.domain.settings import Config, ConfigError, parse_config
from receiver.kube.lease.codec import encode_record, record_from_lease, with_records

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alertmanager"
NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
CONFIG = """
settings: {recovery_window_seconds: 300}
rules:
  - {name: error-rate, matchers: ['alertname="HighErrorRate"'], threshold: 0.05, unit: ratio,
     recovery_window_seconds: 120}
  - {name: latency, matchers: ['alertname="HighLatencyP95"'], threshold: 1, unit: seconds}
targets:
  - {name: finance-service, namespace: finance, matchers: ['service="finance-service"'],
     stable: finance-service-v1, canary: finance-service-v2, replicas: 5}
prometheus: {url: "http://prometheus:9090/"}
"""


def config(extra: str = "") -> Config:
    return parse_config(CONFIG + extra)


def roll_back(cfg: Config) -> Decision:
    body = json.loads((FIXTURES / "firing_error_rate.json").read_bytes())
    decisions = decide(parse_payload(json.dumps(body)), cfg, {}, NOW)
    assert decisions[0].kind is DecisionKind.ROLL_BACK
    return decisions[0]


# --- config ------------------------------------------------------------------------


def test_prometheus_is_optional_and_versions_default_to_the_shipped_labels() -> None:
    cfg = parse_config(CONFIG.replace('prometheus: {url: "http://prometheus:9090/"}', ""))
    assert cfg.prometheus is None
    v = cfg.targets[0].versions
    assert (v.label, v.stable, v.canary) == ("version", "v1", "v2")
    assert config().prometheus is not None and config().prometheus.url == "http://prometheus:9090"  # type: ignore[union-attr]


def test_the_recovery_window_is_the_targets_else_the_rules_else_the_global_one() -> None:
    cfg = config()
    target = cfg.targets[0]
    assert cfg.recovery_window(target, "error-rate") == 120
    assert cfg.recovery_window(target, "latency") == 300
    own = target.model_copy(update={"recovery_window_seconds": 60.0})
    assert cfg.recovery_window(own, "error-rate") == 60


def test_a_target_whose_stable_and_canary_share_a_version_label_value_is_refused() -> None:
    with pytest.raises(ConfigError, match="different label values"):
        parse_config(CONFIG.replace("replicas: 5}", "replicas: 5, versions: {stable: v2, canary: v2}}"))


# --- before acting -----------------------------------------------------------------


def test_a_stable_above_the_threshold_turns_the_rollback_into_not_canary_with_both_values() -> None:
    cfg = config()
    d = roll_back(cfg)
    check = StableCheck(stable=judge([0.07], 0.05), canary=judge([0.072], 0.05))
    out = before_acting(d, cfg.targets[0], cfg.settings, check)
    assert out.kind is DecisionKind.NOT_CANARY
    assert "v1: 7 % (> 5 %), v2: 7.2 % (> 5 %)" in out.reason
    assert "rolling back would not help" in out.reason
    msg = not_canary_message(out, cfg.targets[0], "<!subteam^S1>")
    assert msg.text.startswith("<!subteam^S1> v1 and v2 both sick on HighErrorRate")


def test_a_stable_at_plus_infinity_is_as_sick_as_it_gets() -> None:
    cfg = config()
    check = StableCheck(stable=judge([math.inf], 0.05), canary=judge([0.072], 0.05))
    out = before_acting(roll_back(cfg), cfg.targets[0], cfg.settings, check)
    assert out.kind is DecisionKind.NOT_CANARY
    assert "v1: +Inf" in out.reason


@pytest.mark.parametrize(
    ("check", "said"),
    [
        (StableCheck(stable=judge([], 0.05), canary=judge([0.07], 0.05)),
         "not compared with the stable: v1 has no series"),
        (StableCheck(stable=judge([math.nan], 0.05), canary=judge([0.07], 0.05)),
         "not compared with the stable: v1 has no value (NaN"),
        (StableCheck(skipped="no answer from Prometheus within 2 s"), "not compared with the stable: no answer"),
        (StableCheck(stable=judge([0.004], 0.05), canary=judge([0.07], 0.05)), "the stable v1 is healthy (0.4 %"),
    ],
)
def test_anything_short_of_a_sick_stable_rolls_back_as_today_and_says_why(check: StableCheck, said: str) -> None:
    cfg = config()
    out = before_acting(roll_back(cfg), cfg.targets[0], cfg.settings, check)
    assert out.kind is DecisionKind.ROLL_BACK
    assert said in out.reason


def test_an_alert_older_than_the_canarys_last_scale_is_named_and_may_still_trigger() -> None:
    cfg = config()
    d = roll_back(cfg)
    later = d.alerts[0].starts_at + timedelta(minutes=5)
    out = before_acting(d, cfg.targets[0], cfg.settings, None, phase_started_at=later)
    assert out.kind is DecisionKind.ROLL_BACK
    assert "the alert started before finance-service-v2 last changed replicas" in out.reason


def test_an_alert_older_than_the_canarys_last_scale_does_not_trigger_when_the_setting_says_so() -> None:
    cfg = config().model_copy(update={"settings": config().settings.model_copy(
        update={"alerts_before_phase_may_trigger": False})})
    d = roll_back(cfg)
    out = before_acting(d, cfg.targets[0], cfg.settings, None,
                        phase_started_at=d.alerts[0].starts_at + timedelta(seconds=1))
    assert out.kind is DecisionKind.NO_RULE_MATCHED
    assert "alerts_before_phase_may_trigger is false" in out.reason


# --- recovery ----------------------------------------------------------------------

T0 = datetime(2026, 11, 27, 4, 10, tzinfo=UTC)


def tracker() -> RecoveryTracker:
    return RecoveryTracker("HighErrorRate", "finance-service-v1", "ratio", 300, alert_started_at=T0)


def test_recovery_needs_a_whole_window_of_healthy_readings() -> None:
    t = tracker()
    start = T0 + timedelta(minutes=1)
    assert t.observe(judge([0.004], 0.05), start) is None
    assert t.observe(judge([0.004], 0.05), start + timedelta(seconds=299)) is None
    done = t.observe(judge([0.004], 0.05), start + timedelta(seconds=300))
    assert done is not None and done.outcome is RecoveryOutcome.RECOVERED
    assert done.message == "recovered: HighErrorRate 0.4 % on finance-service-v1 for 5 min, 60 s after the alert"
    assert t.recovered_after() == 60


def test_a_relapse_or_a_nan_restarts_the_healthy_stretch() -> None:
    t = tracker()
    t.observe(judge([0.004], 0.05), T0)
    t.observe(judge([math.nan], 0.05), T0 + timedelta(seconds=200))
    assert t.observe(judge([0.004], 0.05), T0 + timedelta(seconds=301)) is None


def test_still_above_at_the_end_is_not_recovered() -> None:
    t = tracker()
    t.observe(judge([0.079], 0.05), T0)
    out = t.conclude(T0 + timedelta(minutes=10))
    assert out.outcome is RecoveryOutcome.NOT_RECOVERED
    assert out.message.startswith("NOT recovered: HighErrorRate still 7.9 % on finance-service-v1")
    assert out.message.endswith("the new version was probably not the cause")


@pytest.mark.parametrize(
    ("feed", "said"),
    [
        (lambda t: t.observe(judge([], 0.05), T0), "unknown: HighErrorRate on finance-service-v1: no series"),
        (lambda t: t.observe(judge([math.nan], 0.05), T0), "no value (NaN"),
        (lambda t: t.failed("no answer from Prometheus within 2 s"), "unknown: Prometheus could not answer: no answer"),
        (lambda t: t.observe(judge([0.001], 0.05), T0 + timedelta(minutes=9)), "less than the 5 min window"),
    ],
)
def test_an_end_without_a_clear_answer_is_unknown_with_the_reason(feed: object, said: str) -> None:
    t = tracker()
    feed(t)  # type: ignore[operator]
    out = t.conclude(T0 + timedelta(minutes=10))
    assert out.outcome is RecoveryOutcome.UNKNOWN
    assert said in out.message


def test_not_recovered_pages_in_slack_and_recovered_does_not() -> None:
    rec = RollbackRecord("r1", "finance-service", "finance", "finance-service-v1", "finance-service-v2", 5,
                         Phase.SUCCEEDED, T0, "alert", "why")
    bad = replace(rec, recovery=Recovery(RecoveryOutcome.NOT_RECOVERED, "NOT recovered: x"))
    good = replace(rec, recovery=Recovery(RecoveryOutcome.RECOVERED, "recovered: x"))
    assert recovery_reply(bad, "<!here>").text.startswith("<!here> NOT recovered")  # type: ignore[union-attr]
    assert "<!here>" not in recovery_reply(good, "<!here>").text  # type: ignore[union-attr]
    assert recovery_reply(rec) is None


# --- the record in the Lease -------------------------------------------------------


def test_the_recovery_outcome_survives_the_lease_and_old_records_read_as_before() -> None:
    rec = RollbackRecord("r1", "finance-service", "finance", "finance-service-v1", "finance-service-v2", 5,
                         Phase.SUCCEEDED, T0, "alert", "why")
    assert "recovery" not in json.loads(encode_record(rec))  # byte-compatible when unused
    lease = {"metadata": {"name": "rollback-finance-service", "namespace": "finance"}}
    assert record_from_lease(with_records(lease, rec, None)) == rec
    watched = replace(rec, recovery=Recovery(RecoveryOutcome.RECOVERED, "recovered: HighErrorRate 0.4 %",
                                             T0, 300.0, 0.004, T0 + timedelta(minutes=6)))
    assert record_from_lease(with_records(lease, watched, None)) == watched


# --- check-config ------------------------------------------------------------------


def test_check_config_says_when_prometheus_is_not_configured_and_where_it_is() -> None:
    from receiver.cli.check_config import describe

    bare = parse_config(CONFIG.replace('prometheus: {url: "http://prometheus:9090/"}', ""))
    assert any(line.startswith(" - prometheus: not configured") for line in describe(bare, now=NOW, env={}))
    lines = describe(config(), now=NOW, env={})
    assert any(line.startswith(" - prometheus: http://prometheus:9090;") for line in lines)


def test_the_phase_began_when_a_manager_last_set_the_canarys_replicas() -> None:
    deployment = {"metadata": {"managedFields": [
        {"manager": "kubectl-create", "time": "2026-11-20T09:00:00Z", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "kubectl", "subresource": "scale", "time": "2026-11-27T03:00:00Z",
         "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "kube-controller-manager", "time": "2026-11-27T03:59:00Z",
         "fieldsV1": {"f:status": {"f:replicas": {}}}},
    ]}}
    assert last_replicas_change(deployment) == datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    assert last_replicas_change({"metadata": {}}) is None
    assert last_replicas_change(None) is None
