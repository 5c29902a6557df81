"""Decisions judged by the rollout phase read from the live split (the shipped config.yaml).

The rollout guide rolls back at 1 % errors in week 1 and at 5 % from week 2; the same
HighErrorRate at 1.2 % must therefore roll back v2 at 1 of 5 pods and leave it at 3 of 5.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.domain.alerts import WebhookPayload, parse_payload
from receiver.domain.decisions import AlertReason, Decision, DecisionKind, TargetState, decide
from receiver.domain.settings import Config, ConfigError, load_config, parse_config

ROOT = Path(__file__).parent.parent.parent
NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
TARGET = "finance-service"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(ROOT / "config.yaml")


def alert_payload(alertname: str, value: str, **labels: str) -> WebhookPayload:
    alert = {
        "status": "firing",
        "labels": {"alertname": alertname, "service": TARGET, "version": "v2", "severity": "critical", **labels},
        "annotations": {"value": value, "summary": f"{alertname} on {TARGET}"},
        "startsAt": "2026-11-27T03:39:36Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph", "fingerprint": f"fp-{alertname}",
    }
    return parse_payload(json.dumps({
        "receiver": "rollback", "status": "firing", "alerts": [alert], "groupLabels": {},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am.example",
        "version": "4", "groupKey": f'{{}}:{{alertname="{alertname}"}}', "truncatedAlerts": 0,
    }))


def split(canary: int, full: int = 5) -> TargetState:
    """A live cluster mid-rollout: v2 at ``canary`` pods, v1 at the rest, all ready."""
    return TargetState(canary_replicas=canary, stable_replicas=full - canary, stable_ready=full - canary,
                       stable_exists=True, canary_exists=True)


def decide_at(config: Config, state: TargetState | None, alertname: str = "HighErrorRate",
              value: str = "0.012", **labels: str) -> Decision:
    states = {TARGET: state} if state is not None else {}
    [d] = decide(alert_payload(alertname, value, **labels), config, states, NOW)
    return d


@pytest.mark.parametrize(
    ("canary", "kind", "where", "threshold"),
    [
        (1, DecisionKind.ROLL_BACK, "in week 1 (canary 1 of 5)", 0.01),
        (2, DecisionKind.NO_RULE_MATCHED, "between week 1 and week 2 (canary 2 of 5)", 0.05),
        (3, DecisionKind.NO_RULE_MATCHED, "in week 2 (canary 3 of 5)", 0.05),
        (4, DecisionKind.NO_RULE_MATCHED, "in week 3 (canary 4 of 5)", 0.05),
        (5, DecisionKind.NO_RULE_MATCHED, "in week 4 (canary 5 of 5)", 0.05),
    ],
)
def test_an_error_rate_of_1_2_percent_rolls_back_only_in_week_1(
    config: Config, canary: int, kind: DecisionKind, where: str, threshold: float
) -> None:
    d = decide_at(config, split(canary))
    assert d.kind is kind
    assert where in d.reason
    assert d.threshold == threshold
    assert d.phase is not None and str(d.phase) == where.removeprefix("in ")


def test_the_week_1_reason_names_the_week_the_split_and_the_weeks_own_threshold(config: Config) -> None:
    d = decide_at(config, split(1))
    assert d.reason.startswith(
        "rolling finance-service back to finance-service-v1: in week 1 (canary 1 of 5): "
        "HighErrorRate is at 1.2 %, above week 1's 1 % threshold of rule error-rate"
    )
    assert d.why is AlertReason.ABOVE_THRESHOLD
    assert d.phase is not None and d.phase.key == "week-1"


def test_in_week_2_the_same_alert_is_held_to_the_default_five_percent(config: Config) -> None:
    d = decide_at(config, split(3))
    assert "HighErrorRate is at 1.2 %, not above the 5 % threshold of rule error-rate" in d.reason
    assert d.why is AlertReason.BELOW_THRESHOLD


def test_a_split_between_two_weeks_uses_the_default_threshold_and_says_so(config: Config) -> None:
    d = decide_at(config, split(2), value="0.06")
    assert d.kind is DecisionKind.ROLL_BACK
    assert "between week 1 and week 2 (canary 2 of 5): HighErrorRate is at 6 %, above the 5 % threshold" in d.reason


@pytest.mark.parametrize(
    ("alertname", "value", "week_1", "week_2"),
    [
        ("HighLatencyP95", "0.45", DecisionKind.ROLL_BACK, DecisionKind.NO_RULE_MATCHED),
        ("HighLatencyP95", "1.2", DecisionKind.ROLL_BACK, DecisionKind.ROLL_BACK),
        ("HighCPUUsage", "0.75", DecisionKind.ROLL_BACK, DecisionKind.NO_RULE_MATCHED),
        ("HighCPUUsage", "0.95", DecisionKind.ROLL_BACK, DecisionKind.ROLL_BACK),
        ("HighMemoryUsage", "0.85", DecisionKind.ROLL_BACK, DecisionKind.NO_RULE_MATCHED),
        ("DatabaseConnectionFailures", "3", DecisionKind.ROLL_BACK, DecisionKind.ROLL_BACK),
        ("CriticalBusinessFlowFailure", "1", DecisionKind.ROLL_BACK, DecisionKind.ROLL_BACK),
    ],
)
def test_the_shipped_config_encodes_the_guides_levels_per_week(
    config: Config, alertname: str, value: str, week_1: DecisionKind, week_2: DecisionKind
) -> None:
    assert decide_at(config, split(1), alertname, value).kind is week_1
    assert decide_at(config, split(3), alertname, value).kind is week_2


def test_a_target_whose_canary_is_not_known_yet_is_judged_by_the_default_and_says_so(config: Config) -> None:
    d = decide_at(config, None, value="0.012")
    assert d.kind is DecisionKind.NO_RULE_MATCHED
    assert d.phase is None
    assert "in an unknown phase (canary replicas not known yet)" in d.reason


def test_a_target_of_ten_replicas_is_in_week_1_at_two_canary_pods(config: Config) -> None:
    target = config.targets[0].model_copy(update={"replicas": 10})
    ten = config.model_copy(update={"targets": [target]})
    d = decide_at(ten, split(2, full=10))
    assert d.kind is DecisionKind.ROLL_BACK
    assert "in week 1 (canary 2 of 10)" in d.reason


def test_a_targets_own_phases_decide_its_week(tmp_path: Path) -> None:
    text = (ROOT / "config.yaml").read_text().replace(
        "    replicas: 5\n",
        "    replicas: 3\n    phases:\n      - {name: week-1, canary_replicas: 1, of: 3}\n"
        "      - {name: week-2, canary_replicas: 2, of: 3}\n",
    )
    config = parse_config(text)
    assert config.warnings() == []
    d = decide_at(config, split(1, full=3))
    assert d.kind is DecisionKind.ROLL_BACK
    assert "in week 1 (canary 1 of 3)" in d.reason


def test_a_target_that_can_never_show_a_week_is_warned_about() -> None:
    text = (ROOT / "config.yaml").read_text().replace("    replicas: 5\n", "    replicas: 3\n")
    warnings = parse_config(text).warnings()
    assert any("can never be in week-1, week-2, week-3" in w for w in warnings), warnings


def _rule_config(rule: str) -> str:
    return (
        "rules:\n" + rule
        + "targets:\n  - name: t\n    namespace: n\n    matchers: ['service=\"t\"']\n"
        "    stable: t-v1\n    canary: t-v2\n    replicas: 5\n"
    )


def test_a_rule_with_both_a_threshold_and_thresholds_is_refused() -> None:
    with pytest.raises(ConfigError, match="both threshold and thresholds"):
        parse_config(_rule_config(
            "  - name: e\n    matchers: ['alertname=\"E\"']\n    threshold: 0.05\n"
            "    thresholds: {week-1: 0.01, default: 0.05}\n"))


def test_a_threshold_for_a_phase_nobody_lists_is_refused_naming_the_typo() -> None:
    with pytest.raises(ConfigError, match="thresholds name no listed phase: week1"):
        parse_config(_rule_config(
            "  - name: e\n    matchers: ['alertname=\"E\"']\n    thresholds: {week1: 0.01, default: 0.05}\n"))


def test_thresholds_without_a_default_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs a 'default' threshold"):
        parse_config(_rule_config("  - name: e\n    matchers: ['alertname=\"E\"']\n    thresholds: {week-1: 0.01}\n"))


# --- warning levels: people are told, nothing is changed ---------------------------------


def test_a_warning_alert_is_told_with_its_week_and_never_rolls_back(config: Config) -> None:
    d = decide_at(config, split(1), "ErrorRateWarningWeek1", "0.015", rollback="warn", severity="warning")
    assert d.kind is DecisionKind.WARNED
    assert d.why is AlertReason.WARNING
    assert d.reason.startswith("warning for finance-service in week 1 (canary 1 of 5): ErrorRateWarningWeek1")
    assert "nothing is changed for a warning" in d.reason


def test_a_warning_labelled_alert_above_a_rules_threshold_still_only_warns(config: Config) -> None:
    d = decide_at(config, split(1), "HighErrorRate", "0.5", rollback="warn")
    assert d.kind is DecisionKind.WARNED


def test_a_rollback_alert_in_the_same_delivery_as_a_warning_still_rolls_back(config: Config) -> None:
    warn = alert_payload("ErrorRateWarningWeek1", "0.015", rollback="warn").alerts[0]
    payload = alert_payload("HighErrorRate", "0.02")
    both = payload.model_copy(update={"alerts": (warn, *payload.alerts)})
    [d] = decide(both, config, {TARGET: split(1)}, NOW)
    assert d.kind is DecisionKind.ROLL_BACK
    assert d.alertname == "HighErrorRate"


def test_a_warning_after_the_canary_was_rolled_back_is_answered_quietly(config: Config) -> None:
    rolled_back = TargetState(canary_replicas=0, stable_replicas=5, stable_ready=5, stable_exists=True,
                              canary_exists=True)
    d = decide_at(config, rolled_back, "ErrorRateWarningWeek1", "0.07", rollback="warn")
    assert d.kind is DecisionKind.ALREADY_ROLLED_BACK
    running = TargetState(canary_replicas=1, stable_replicas=4, stable_exists=True, canary_exists=True,
                          rollback_running="abc123")
    d = decide_at(config, running, "ErrorRateWarningWeek1", "0.07", rollback="warn")
    assert d.kind is DecisionKind.IN_PROGRESS
