"""decide(): one decision per configured target, with a reason an on-call engineer can act on.

Payloads are the bodies captured from the real Alertmanager; config is the shipped
config.yaml, varied per test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.domain.alerts import WebhookPayload, parse_payload
from receiver.domain.decisions import AlertReason, AppliedMute, Decision, DecisionKind, MuteScope, TargetState, decide
from receiver.domain.settings import Config, Mute, load_config, parse_config

ROOT = Path(__file__).parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "alertmanager"
NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
TARGET = "finance-service"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(ROOT / "config.yaml")


def payload(name: str, **alert_changes: Any) -> WebhookPayload:
    data = json.loads((FIXTURES / name).read_bytes())
    for alert in data["alerts"]:
        for key, value in alert_changes.items():
            alert[key] = {**alert[key], **value} if isinstance(value, dict) else value
    return parse_payload(json.dumps(data))


def with_settings(config: Config, **changes: Any) -> Config:
    return config.model_copy(update={"settings": config.settings.model_copy(update=changes)})


def with_target(config: Config, **changes: Any) -> Config:
    target = config.targets[0].model_copy(update=changes)
    return config.model_copy(update={"targets": [target]})


def only(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1, decisions
    return decisions[0]


def decide_one(name: str, config: Config, state: TargetState | None = None, **changes: Any) -> Decision:
    states = {TARGET: state} if state else {}
    return only(decide(payload(name, **changes), config, states, NOW))


# --- what the rules say ---------------------------------------------------------


def test_an_error_rate_above_five_percent_rolls_back(config: Config) -> None:
    d = decide_one("firing_error_rate.json", config)
    assert d.kind is DecisionKind.ROLL_BACK
    assert d.target == TARGET
    assert d.rule == "error-rate"
    assert d.value == pytest.approx(0.072)
    assert d.threshold == 0.05
    assert d.unit == "ratio"
    assert d.alertname == "HighErrorRate"
    assert "HighErrorRate is at 7.2 %, above the 5 % threshold of rule error-rate" in d.reason
    assert "finance-service-v1" in d.reason


def test_a_decision_carries_the_group_key_url_and_fingerprints(config: Config) -> None:
    p = payload("firing_error_rate.json")
    d = only(decide(p, config, {}, NOW))
    assert d.group_key == p.group_key
    assert d.external_url == p.external_url
    assert d.fingerprints == (p.alerts[0].fingerprint,)
    assert d.generator_url == p.alerts[0].generator_url
    assert d.summary()["decision"] == "roll_back"


def test_a_latency_group_rolls_back_on_its_first_slow_pod(config: Config) -> None:
    d = decide_one("firing_latency_group.json", config)
    assert d.kind is DecisionKind.ROLL_BACK
    assert d.rule == "latency-p95"
    assert d.value == pytest.approx(1.234)
    assert "1234 ms, above the 1000 ms threshold" in d.reason
    assert "(and 1 more firing alert)" in d.reason
    assert len(d.alerts) == 3  # every firing alert of the target, the trigger first


def test_only_firing_alerts_of_a_mixed_group_are_judged(config: Config) -> None:
    d = decide_one("mixed_latency_group.json", config)
    assert d.kind is DecisionKind.ROLL_BACK
    assert all(a.firing for a in d.alerts)
    assert len(d.alerts) == 2


def test_a_rule_without_threshold_rolls_back_on_any_firing_alert(config: Config) -> None:
    d = decide_one("firing_special_chars.json", config)
    assert d.kind is DecisionKind.ROLL_BACK
    assert d.rule == "business-flow"
    assert d.threshold is None
    assert "rolls back on any firing alert" in d.reason
    # Raw characters stay raw: escaping for Slack is the renderer's job.
    assert "Payments <EU> & transfers failing" in d.reason


def test_values_below_threshold_or_not_numbers_do_not_roll_back_and_say_why(
    config: Config,
) -> None:
    d = decide_one("firing_cpu_below_threshold.json", config)
    assert d.kind is DecisionKind.NO_RULE_MATCHED
    assert d.rule == "cpu"
    assert "HighCPUUsage is at 42 %, not above the 90 % threshold of rule cpu" in d.reason
    assert "value='n/a', which is not a number" in d.reason
    assert "does not trigger" in d.reason


def test_an_alert_without_its_value_annotation_is_reported_as_unchecked(config: Config) -> None:
    data = json.loads((FIXTURES / "firing_error_rate.json").read_bytes())
    del data["alerts"][0]["annotations"]["value"]
    d = only(decide(parse_payload(json.dumps(data)), config, {}, NOW))
    assert d.kind is DecisionKind.NO_RULE_MATCHED
    assert d.why is AlertReason.NO_VALUE
    assert "carries no 'value' annotation" in d.reason


def test_a_firing_alert_no_rule_knows_is_no_rule_matched(config: Config) -> None:
    d = decide_one("firing_error_rate.json", config, labels={"alertname": "DiskAlmostFull"})
    assert d.kind is DecisionKind.NO_RULE_MATCHED
    assert d.rule is None
    assert "DiskAlmostFull matches no immediate-rollback rule" in d.reason


def test_resolved_alerts_give_a_resolved_decision_for_the_notifier(config: Config) -> None:
    d = decide_one("resolved_error_rate.json", config)
    assert d.kind is DecisionKind.RESOLVED
    assert d.rule == "error-rate"
    assert "HighErrorRate for finance-service resolved at 2026-" in d.reason


def test_alerts_of_an_unconfigured_service_get_no_decision(config: Config) -> None:
    assert decide(payload("firing_other_service.json"), config, {}, NOW) == []


def test_alert_labels_can_never_name_a_deployment(config: Config) -> None:
    d = decide_one(
        "firing_error_rate.json",
        config,
        labels={"deployment": "kube-dns", "namespace": "kube-system", "target": "evil"},
    )
    assert d.target == TARGET
    assert "kube-dns" not in d.reason


def test_each_matching_target_gets_its_own_decision_in_config_order(config: Config) -> None:
    billing = config.targets[0].model_copy(
        update={
            "name": "billing-service",
            "namespace": "billing",
            "matchers": ['service="billing-service"'],
            "stable": "billing-v1",
            "canary": "billing-v2",
        }
    )
    two = config.model_copy(update={"targets": [billing, config.targets[0]]})
    data = json.loads((FIXTURES / "firing_error_rate.json").read_bytes())
    other = json.loads((FIXTURES / "firing_other_service.json").read_bytes())
    data["alerts"] += other["alerts"]
    decisions = decide(parse_payload(json.dumps(data)), two, {}, NOW)
    assert [d.target for d in decisions] == ["billing-service", TARGET]
    assert all(d.kind is DecisionKind.ROLL_BACK for d in decisions)


# --- the priority chain -----------------------------------------------------------

MUTE = Mute(reason="planned DB migration", by="jane.doe", until=NOW + timedelta(hours=2))


def test_the_kill_switch_disables_with_what_would_have_happened(config: Config) -> None:
    d = decide_one("firing_error_rate.json", with_settings(config, enabled=False))
    assert d.kind is DecisionKind.DISABLED
    assert "would have rolled back finance-service" in d.reason
    assert "7.2 %" in d.reason


def test_a_global_mute_says_who_until_when_and_what_would_have_happened(config: Config) -> None:
    d = decide_one("firing_error_rate.json", with_settings(config, mute=MUTE))
    assert d.kind is DecisionKind.MUTED
    assert d.mute == AppliedMute(MuteScope.GLOBAL, "jane.doe", "planned DB migration", MUTE.until)
    assert d.reason.startswith("all targets muted by jane.doe until 2026-11-27 06:00:00 UTC")
    assert "(planned DB migration): would have rolled back finance-service, because" in d.reason


def test_a_target_mute_without_end_holds_until_removed(config: Config) -> None:
    mute = Mute(reason="investigating", by="sam")
    d = decide_one("firing_error_rate.json", with_target(config, mute=mute))
    assert d.kind is DecisionKind.MUTED
    assert "finance-service muted by sam until someone unmutes it" in d.reason


def test_an_expired_mute_no_longer_holds(config: Config) -> None:
    expired = Mute(reason="x", by="sam", until=NOW - timedelta(seconds=1))
    d = decide_one("firing_error_rate.json", with_target(config, mute=expired))
    assert d.kind is DecisionKind.ROLL_BACK


def test_a_mute_mentions_a_rollback_already_done(config: Config) -> None:
    state = TargetState(canary_replicas=0, stable_replicas=5)
    d = decide_one("firing_error_rate.json", with_settings(config, mute=MUTE), state)
    assert d.kind is DecisionKind.MUTED
    assert "already on the stable version" in d.reason


def test_disabled_wins_over_muted(config: Config) -> None:
    d = decide_one("firing_error_rate.json", with_settings(config, enabled=False, mute=MUTE))
    assert d.kind is DecisionKind.DISABLED


def test_a_running_rollback_makes_a_repeat_in_progress(config: Config) -> None:
    d = decide_one("firing_error_rate.json", config, TargetState(rollback_running="rb-42"))
    assert d.kind is DecisionKind.IN_PROGRESS
    assert "rb-42" in d.reason


def test_canary_at_zero_and_stable_full_is_already_rolled_back(config: Config) -> None:
    state = TargetState(canary_replicas=0, stable_replicas=5, stable_ready=5)
    d = decide_one("firing_error_rate.json", config, state)
    assert d.kind is DecisionKind.ALREADY_ROLLED_BACK
    assert "finance-service-v2 at 0, finance-service-v1 at 5 of 5" in d.reason


@pytest.mark.parametrize(
    ("state", "missing"),
    [
        (TargetState(stable_replicas=5, stable_exists=True, canary_exists=False),
         "canary Deployment finance/finance-service-v2"),
        (TargetState(canary_replicas=1, stable_exists=False, canary_exists=True),
         "stable Deployment finance/finance-service-v1"),
    ],
)
def test_a_missing_deployment_is_a_misconfiguration_naming_it_not_a_quiet_no_op(
    config: Config, state: TargetState, missing: str,
) -> None:
    d = decide_one("firing_error_rate.json", config, state)
    assert d.kind is DecisionKind.MISCONFIGURED
    assert missing in d.reason and "not exist" in d.reason
    assert d.details["missing"] == missing


def test_a_missing_canary_is_misconfigured_even_while_muted(config: Config) -> None:
    state = TargetState(canary_replicas=None, stable_replicas=5, stable_exists=True, canary_exists=False)
    d = decide_one("firing_error_rate.json", with_settings(config, mute=MUTE), state)
    assert d.kind is DecisionKind.MISCONFIGURED


@pytest.mark.parametrize(
    "state",
    [
        TargetState(canary_replicas=1, stable_replicas=4),
        TargetState(canary_replicas=0, stable_replicas=3),
        TargetState(),  # unknown: act, the executor checks again
    ],
)
def test_anything_short_of_fully_rolled_back_rolls_back(config: Config, state: TargetState) -> None:
    assert decide_one("firing_error_rate.json", config, state).kind is DecisionKind.ROLL_BACK


def test_three_rollbacks_within_the_hour_halt_the_fight(config: Config) -> None:
    recent = (NOW - timedelta(minutes=50), NOW - timedelta(minutes=20), NOW - timedelta(minutes=5))
    d = decide_one("firing_error_rate.json", config, TargetState(recent_rollbacks=recent))
    assert d.kind is DecisionKind.HALTED
    assert "rolled back 3 times in the last hour" in d.reason
    assert "max_rollbacks_per_hour is 3" in d.reason


def test_rollbacks_older_than_an_hour_do_not_count_as_a_fight(config: Config) -> None:
    old = tuple(NOW - timedelta(minutes=61 + i) for i in range(5))
    recent = (NOW - timedelta(minutes=1),)
    d = decide_one("firing_error_rate.json", config, TargetState(recent_rollbacks=old + recent))
    assert d.kind is DecisionKind.ROLL_BACK


def test_a_repeat_after_the_last_allowed_rollback_is_already_rolled_back_not_halted(
    config: Config,
) -> None:
    recent = tuple(NOW - timedelta(minutes=m) for m in (40, 20, 2))
    state = TargetState(canary_replicas=0, stable_replicas=5, recent_rollbacks=recent)
    d = decide_one("firing_error_rate.json", config, state)
    assert d.kind is DecisionKind.ALREADY_ROLLED_BACK


def test_dry_run_says_what_it_would_scale(config: Config) -> None:
    d = decide_one("firing_error_rate.json", with_settings(config, dry_run=True))
    assert d.kind is DecisionKind.DRY_RUN
    assert "would scale finance-service-v2 to 0 and finance-service-v1 to 5 in namespace finance" in d.reason


def test_the_earliest_rule_in_config_order_wins(config: Config) -> None:
    data = json.loads((FIXTURES / "firing_latency_group.json").read_bytes())
    err = json.loads((FIXTURES / "firing_error_rate.json").read_bytes())["alerts"][0]
    data["alerts"].append(err)  # error-rate comes before latency-p95 in config.yaml
    d = only(decide(parse_payload(json.dumps(data)), config, {}, NOW))
    assert d.rule == "error-rate"
    assert d.alerts[0].alertname == "HighErrorRate"


def test_the_first_matching_rule_decides_even_when_a_later_one_would_trigger() -> None:
    cfg = parse_config(
        """
rules:
  - {name: strict, matchers: ['alertname="HighErrorRate"'], threshold: 0.5, unit: ratio}
  - {name: loose, matchers: ['alertname="HighErrorRate"'], threshold: 0.01, unit: ratio}
targets:
  - {name: finance-service, namespace: finance, matchers: ['service="finance-service"'],
     stable: finance-service-v1, canary: finance-service-v2, replicas: 5}
"""
    )
    d = decide_one("firing_error_rate.json", cfg)
    assert d.kind is DecisionKind.NO_RULE_MATCHED
    assert d.rule == "strict"


def test_deciding_twice_gives_the_same_answer(config: Config) -> None:
    p = payload("firing_latency_group.json")
    assert decide(p, config, {}, NOW) == decide(p, config, {}, NOW)


def test_ten_thousand_alerts_decide_with_one_trigger_named(config: Config) -> None:
    data = json.loads((FIXTURES / "firing_latency_group.json").read_bytes())
    template = data["alerts"][0]
    data["alerts"] = [
        {**template, "fingerprint": f"{i:016x}", "labels": {**template["labels"], "pod": f"p{i}"}}
        for i in range(10_000)
    ]
    d = only(decide(parse_payload(json.dumps(data)), config, {}, NOW))
    assert d.kind is DecisionKind.ROLL_BACK
    assert len(d.alerts) == 10_000
    assert "(and 9999 more firing alerts)" in d.reason


# --- the typed reason (the metric label) ----------------------------------------------


def test_the_alert_reasons_keep_the_metric_label_values_dashboards_use() -> None:
    assert {r.value for r in AlertReason} == {
        "above_threshold", "no_threshold", "below_threshold", "no_value", "not_a_number", "no_rule", "resolved",
        "warning",
    }


def test_each_decision_carries_why_its_alerts_got_it(config: Config) -> None:
    assert decide_one("firing_error_rate.json", config).why is AlertReason.ABOVE_THRESHOLD
    muted = decide_one("firing_error_rate.json", with_settings(config, mute=MUTE))
    assert muted.why is AlertReason.ABOVE_THRESHOLD  # muted is the kind; the alert still triggered
    low = decide_one("firing_error_rate.json", config, annotations={"value": "0.01"})
    assert low.why is AlertReason.BELOW_THRESHOLD
    nan = decide_one("firing_error_rate.json", config, annotations={"value": "NaN"})
    assert nan.why is AlertReason.NOT_A_NUMBER


def test_an_expired_target_mute_by_the_same_person_does_not_replace_the_global_one(config: Config) -> None:
    old = Mute(reason="old investigation", by="jane.doe", until=NOW - timedelta(days=1))
    d = decide_one("firing_error_rate.json", with_target(with_settings(config, mute=MUTE), mute=old))
    assert d.mute == AppliedMute(MuteScope.GLOBAL, "jane.doe", "planned DB migration", MUTE.until)
