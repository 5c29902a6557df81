"""deploy/prometheus: the alert rules Prometheus evaluates and the receiver acts on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from receiver.domain.matchers import matches_all
from receiver.domain.phases import phase_of
from receiver.domain.settings import load_config
from tests.deploy.helpers import DEPLOY, ROOT, run, tool
from tests.e2e.rules_fast import RULES, fast_rules

PROM = DEPLOY / "prometheus"
RECEIVER_RULES = PROM / "receiver-rules.yml"
SELF_MONITORING = {
    "ReceiverDown", "ReceiverConfigReloadFailing", "ReceiverSlackDown",
    "ReceiverRollbackFailed", "ReceiverBreakerOpen",
}
IMMEDIATE = {
    "HighErrorRate", "HighLatencyP95", "HighCPUUsage", "HighMemoryUsage",
    "DatabaseConnectionFailures", "CriticalBusinessFlowFailure",
}
# The lowest level any phase of the rollout guide rolls back at (week 1's, or "any").
LOWEST_LEVEL = {
    "HighErrorRate": 0.01, "HighLatencyP95": 0.3, "HighCPUUsage": 0.7, "HighMemoryUsage": 0.8,
    "DatabaseConnectionFailures": 0.0, "CriticalBusinessFlowFailure": 0.0,
}
# Time to act (README): the scrape interval the rules are written for, and the goal for a
# canary failing 30 % of its requests.
SCRAPE_SECONDS, SEVERE_RATIO, GOAL_SECONDS = 15, 0.3, 90


def groups(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return list(doc["spec"]["groups"] if doc.get("kind") == "PrometheusRule" else doc["groups"])


def alerts(path: Path = RULES) -> dict[str, dict[str, Any]]:
    """Each alert's first rule (for one with a fast twin, the careful one)."""
    found: dict[str, dict[str, Any]] = {}
    for g in groups(path):
        for r in g["rules"]:
            if "alert" in r:
                found.setdefault(r["alert"], r)
    return found


def twins(name: str, path: Path = RULES) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every rule of alert ``name`` with its group."""
    return [(r, g) for g in groups(path) for r in g["rules"] if r.get("alert") == name]


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    unit = "ms" if duration.endswith("ms") else duration[-1]
    return float(duration[: -len(unit)]) * units[unit]


def window(expr: str) -> float:
    [w] = set(re.findall(r"\[(\d+[smh])\]", expr))
    return seconds(w)


def level(expr: str) -> float:
    """The number the expression compares with last (`... > 0.05`)."""
    return float(re.findall(r">\s*([0-9.]+)\s*$", expr.strip())[-1])


def test_promtool_accepts_the_shipped_rules_and_their_fast_variant(tmp_path: Path) -> None:
    promtool = tool("promtool")
    fast = fast_rules(RULES, tmp_path / "fast.yml")
    result = run(promtool, "check", "rules", str(RULES), str(fast), str(RECEIVER_RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_just_above_its_threshold_and_not_just_below() -> None:
    promtool = tool("promtool")
    files = sorted(str(p) for p in (PROM / "tests").glob("*.yml"))
    assert len(files) >= 2
    result = run(promtool, "test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


def test_every_alert_has_a_promtool_test_that_expects_it_to_fire() -> None:
    tested = {
        case["alertname"]
        for f in (PROM / "tests").glob("*.yml")
        for t in yaml.safe_load(f.read_text())["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    shipped = set(alerts()) | set(alerts(RECEIVER_RULES))
    assert shipped <= tested, f"untested alerts: {shipped - tested}"


def test_the_prometheusrule_carries_exactly_the_groups_of_rules_yml() -> None:
    assert groups(PROM / "prometheusrule.yaml") == groups(RULES), (
        "prometheusrule.yaml drifted from rules.yml: run python tests/deploy/sync_prometheusrule.py"
    )


def test_the_receiver_prometheusrule_carries_exactly_the_groups_of_receiver_rules_yml() -> None:
    assert groups(PROM / "receiver-prometheusrule.yaml") == groups(RECEIVER_RULES), (
        "receiver-prometheusrule.yaml drifted from receiver-rules.yml: "
        "run python tests/deploy/sync_prometheusrule.py"
    )


def test_the_receiver_is_watched_by_rules_on_the_metrics_it_exports() -> None:
    """Each self-monitoring alert exists and reads a series the receiver (or Prometheus) has."""
    found = alerts(RECEIVER_RULES)
    assert set(found) == SELF_MONITORING
    assert 'receiver_rollbacks_finished_total{outcome="failed"}' in found["ReceiverRollbackFailed"]["expr"]
    assert "receiver_slack_up" in found["ReceiverSlackDown"]["expr"]
    assert "receiver_breaker_open" in found["ReceiverBreakerOpen"]["expr"]
    assert "receiver_config_last_reload_successful" in found["ReceiverConfigReloadFailing"]["expr"]
    for name, rule in found.items():
        assert "rollback" not in rule["labels"], f"{name} would be sent to the receiver itself"
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name


def test_the_rollback_alerts_are_critical_and_carry_the_value_the_receiver_reads() -> None:
    found = alerts()
    assert set(found) >= IMMEDIATE
    for name in IMMEDIATE:
        for rule, _ in twins(name):
            assert rule["labels"]["severity"] == "critical", name
            assert rule["annotations"]["value"] == "{{ $value }}", name
            assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
            assert "by (service, version" in " ".join(rule["expr"].split()), name
    for name in set(found) - IMMEDIATE:
        assert found[name]["labels"]["severity"] == "warning", name


def test_the_shipped_config_rolls_back_on_each_critical_alert_of_finance_service() -> None:
    """Names, labels and units agree between rules.yml and config.yaml."""
    config = load_config(ROOT / "config.yaml")
    target = config.target("finance-service")
    assert target is not None
    for name in IMMEDIATE:
        labels = {"alertname": name, "service": "finance-service", "version": "v2",
                  **alerts()[name]["labels"]}
        rules = [r for r in config.rules if matches_all(r.parsed, labels)]
        assert rules, f"no rule in config.yaml acts on {name}"
        assert matches_all(target.parsed, labels)
    by_alert = {
        name: next(r for r in config.rules if matches_all(
            r.parsed, {"alertname": name, **alerts()[name]["labels"]}))
        for name in IMMEDIATE
    }
    # The guide's levels per week, in the units {{ $value }} carries: week 1 at the level the
    # Prometheus rule fires at (the lowest any phase acts on), weeks 2-4 at the immediate ones.
    week = {n: phase_of(n, 5) for n in (1, 3, 4, 5)}
    later = {"HighErrorRate": 0.05, "HighLatencyP95": 1.0, "HighCPUUsage": 0.9, "HighMemoryUsage": 1.0}
    for name, rule in by_alert.items():
        level = rule.threshold_in(week[1])
        assert (level.value if level else 0.0) == LOWEST_LEVEL[name], name
        for n in (3, 4, 5):
            level = rule.threshold_in(week[n])
            assert (level.value if level else 0.0) == later.get(name, 0.0), (name, n)


def test_warnings_reach_the_receiver_by_their_own_label_never_the_rollback_route() -> None:
    route = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())["route"]
    rollback = next(r for r in route["routes"] if r["receiver"] == "rollback-receiver")
    assert rollback["matchers"] == ['rollback="immediate"']
    # warnings have their own label (and route): the receiver tells people, never scales
    assert all(a["labels"]["rollback"] == "warn" for n, a in alerts().items() if n not in IMMEDIATE)
    assert all(alerts()[n]["labels"]["rollback"] == "immediate" for n in IMMEDIATE)


def test_the_fast_variant_changes_only_timing(tmp_path: Path) -> None:
    fast = alerts(fast_rules(RULES, tmp_path / "fast.yml"))
    shipped = alerts()
    assert fast.keys() == shipped.keys()
    for name, rule in fast.items():
        assert rule["for"] == "0s"
        assert "[5s]" in rule["expr"] or "process_" in rule["expr"]
        assert "[2m]" not in rule["expr"] and "[5m]" not in rule["expr"]
        assert rule["labels"] == shipped[name]["labels"]
        assert rule["annotations"] == shipped[name]["annotations"]
    assert {g["interval"] for g in groups(tmp_path / "fast.yml")} == {"1s"}


def test_each_rollback_alert_fires_at_the_lowest_level_any_phase_acts_on_and_says_which() -> None:
    """Week 1 acts at 1 %, 300 ms, 70 % CPU, 80 % memory; the receiver judges by phase."""
    for name, lowest in LOWEST_LEVEL.items():
        careful, _ = twins(name)[0]
        assert level(careful["expr"]) == lowest, name
        for rule, _ in twins(name):
            crossed = level(rule["expr"])
            assert float(rule["labels"]["threshold"]) == crossed, name
            assert rule["annotations"]["threshold"] == rule["labels"]["threshold"], name


def test_a_severe_error_rate_or_latency_has_a_fast_rule_beside_the_careful_one() -> None:
    """Multi-window: the careful rule keeps its 2-minute guard; the fast one fires at 4x the
    highest level a phase acts on (5 %, 1000 ms) over a shorter window and `for`."""
    for name, severe in (("HighErrorRate", 0.2), ("HighLatencyP95", 4.0)):
        (careful, _), (fast, _) = twins(name)
        assert seconds(careful["for"]) == 120 and window(careful["expr"]) == 120, name
        assert level(fast["expr"]) == severe, name
        assert window(fast["expr"]) < window(careful["expr"]), name
        assert seconds(fast["for"]) < seconds(careful["for"]), name
        assert fast["labels"]["threshold"] != careful["labels"]["threshold"], name


def test_the_fast_path_scales_a_canary_failing_30_percent_within_the_goal() -> None:
    """Worst case of README's "Time to act" budget, from the shipped rule and route."""
    (fast, group) = twins("HighErrorRate")[1]
    route = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())["route"]
    rollback = next(r for r in route["routes"] if r["receiver"] == "rollback-receiver")
    crossing = window(fast["expr"]) * level(fast["expr"]) / SEVERE_RATIO  # window's share to fill
    evaluation = seconds(group["interval"])
    worst = (crossing + SCRAPE_SECONDS + evaluation + seconds(fast["for"])
             + seconds(rollback["group_wait"]))
    assert worst <= GOAL_SECONDS, worst
    # a fast alert joining a group already notified waits group_interval, and an alert
    # whose value climbs past the live phase's level is re-sent with it every repeat
    assert seconds(rollback["group_interval"]) <= 30
    assert seconds(rollback["repeat_interval"]) <= 60
