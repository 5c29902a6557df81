"""deploy/alertmanager/alertmanager.yml: the route and receiver operators merge in."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.deploy.helpers import DEPLOY, run, tool
from tests.deploy.test_prometheus_rules import RECEIVER_RULES, alerts
from tests.e2e.prom import alertmanager_config

AM = DEPLOY / "alertmanager" / "alertmanager.yml"


def test_amtool_accepts_the_shipped_snippet() -> None:
    result = run(tool("amtool"), "check-config", str(AM))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_amtool_rejects_a_broken_copy(tmp_path: Path) -> None:
    """The check above can fail: a webhook with both credentials and basic auth is refused."""
    doc = yaml.safe_load(AM.read_text())
    hook = doc["receivers"][1]["webhook_configs"][0]
    hook["http_config"]["basic_auth"] = {"username": "am", "password": "x"}
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(doc))
    assert run(tool("amtool"), "check-config", str(bad)).returncode != 0


def receivers_for(*labels: str, config: Path = AM) -> list[str]:
    """The receivers Alertmanager would route an alert with these labels to (amtool's own routing)."""
    result = run(tool("amtool"), "config", "routes", "test", f"--config.file={config}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


def test_each_rollback_alert_of_the_shipped_rules_reaches_the_receiver() -> None:
    for name, rule in alerts().items():
        if rule["labels"].get("rollback") == "immediate":
            labels = [f"{k}={v}" for k, v in {**rule["labels"], "alertname": name}.items()]
            assert receivers_for(*labels) == ["rollback-receiver"], name


def test_a_critical_alert_without_the_rollback_label_does_not_reach_the_receiver() -> None:
    assert receivers_for("alertname=ReceiverDown", "severity=critical") == ["default"]
    assert receivers_for("alertname=DiskFull", "severity=critical", "service=finance-service") == ["default"]


def test_each_warning_of_the_shipped_rules_reaches_the_receiver_by_its_own_route() -> None:
    warnings = {n: r for n, r in alerts().items() if r["labels"].get("severity") == "warning"}
    assert len(warnings) == 10
    for name, rule in warnings.items():
        assert rule["labels"]["rollback"] == "warn", name
        labels = [f"{k}={v}" for k, v in {**rule["labels"], "alertname": name}.items()]
        assert receivers_for(*labels) == ["rollback-receiver"], name


def test_a_warning_without_the_warn_label_does_not_reach_the_receiver() -> None:
    assert receivers_for("alertname=ErrorRateWarning", "severity=warning", "service=finance-service") == ["default"]


def test_warnings_are_grouped_per_alert_and_service_and_not_repeated_every_minute() -> None:
    doc = yaml.safe_load(AM.read_text())
    route = next(r for r in doc["route"]["routes"] if r["matchers"] == ['rollback="warn"'])
    assert route["receiver"] == "rollback-receiver"
    assert route["group_by"] == ["alertname", "service"]
    assert route["continue"] is True
    assert route["repeat_interval"] == "4h"


def test_the_receivers_own_alerts_go_to_people_not_to_the_receiver() -> None:
    for name, rule in alerts(RECEIVER_RULES).items():
        labels = [f"{k}={v}" for k, v in {**rule["labels"], "alertname": name}.items()]
        assert receivers_for(*labels) == ["default"], name


def test_rollback_alerts_reach_the_receiver_with_bearer_credentials_and_resolutions() -> None:
    doc = yaml.safe_load(AM.read_text())
    route = next(r for r in doc["route"]["routes"] if r["receiver"] == "rollback-receiver")
    assert route["matchers"] == ['rollback="immediate"']
    assert route["group_by"] == ["alertname", "service"]
    assert route["continue"] is True
    receiver = next(r for r in doc["receivers"] if r["name"] == "rollback-receiver")
    [hook] = receiver["webhook_configs"]
    assert hook["url"] == "http://rollback-receiver.rollback-receiver.svc:8080/webhook"
    assert hook["send_resolved"] is True
    assert hook["max_alerts"] == 0
    assert hook["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/alertmanager/secrets/rollback-receiver-token",
    }


def test_the_end_to_end_variant_keeps_the_route_and_is_valid(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret")
    text = alertmanager_config("http://127.0.0.1:1234/webhook", token)
    cfg = tmp_path / "am.yml"
    cfg.write_text(text)
    result = run(tool("amtool"), "check-config", str(cfg))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = yaml.safe_load(text)
    shipped = yaml.safe_load(AM.read_text())
    route = doc["route"]["routes"][0]
    assert route["matchers"] == shipped["route"]["routes"][0]["matchers"]
    assert route["group_wait"] == "0s"
    hook = doc["receivers"][1]["webhook_configs"][0]
    assert hook["url"] == "http://127.0.0.1:1234/webhook"
    assert hook["http_config"]["authorization"]["credentials_file"] == str(token)
