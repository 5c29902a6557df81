"""deploy/prometheus: the alert rules Prometheus evaluates and the receiver acts on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from receiver.domain.matchers import matches_all
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
    "HighErrorRate", "HighLatencyP95", "HighCPUUsage",
    "DatabaseConnectionFailures", "CriticalBusinessFlowFailure",
}


def groups(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return list(doc["spec"]["groups"] if doc.get("kind") == "PrometheusRule" else doc["groups"])


def alerts(path: Path = RULES) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups(path) for r in g["rules"] if "alert" in r}


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


def test_the_five_rollback_alerts_are_critical_and_carry_the_value_the_receiver_reads() -> None:
    found = alerts()
    assert set(found) >= IMMEDIATE
    for name in IMMEDIATE:
        rule = found[name]
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
    # The thresholds are the rules' own, in the units {{ $value }} carries.
    assert by_alert["HighErrorRate"].threshold == 0.05
    assert by_alert["HighLatencyP95"].threshold == 1.0
    assert by_alert["HighCPUUsage"].threshold == 0.9


def test_warnings_are_not_routed_to_the_rollback_receiver() -> None:
    route = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())["route"]
    rollback = next(r for r in route["routes"] if r["receiver"] == "rollback-receiver")
    assert rollback["matchers"] == ['rollback="immediate"']
    assert all("rollback" not in a["labels"] for n, a in alerts().items() if n not in IMMEDIATE)
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
