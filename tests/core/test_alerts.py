"""Webhook payloads: real Alertmanager bodies parse; bad bodies say what is wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from receiver.domain.alerts import Alert, PayloadError, parse_number, parse_payload

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alertmanager"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture(name))
    return data


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_captured_alertmanager_body_parses(name: str) -> None:
    payload = parse_payload(fixture(name))
    assert payload.version == "4"
    assert payload.alerts
    assert payload.group_key.startswith("{}:")


def test_a_firing_alert_has_no_end_while_go_sends_zero_time() -> None:
    alert = parse_payload(fixture("firing_error_rate.json")).alerts[0]
    assert alert.firing
    assert alert.ends_at.year == 1  # as sent
    assert alert.ended_at is None
    assert alert.value() == pytest.approx(0.072)
    assert alert.alertname == "HighErrorRate"


def test_a_resolved_alert_carries_its_end_time() -> None:
    payload = parse_payload(fixture("resolved_error_rate.json"))
    alert = payload.alerts[0]
    assert payload.status == "resolved"
    assert not alert.firing
    assert alert.ended_at is not None
    assert alert.ended_at.tzinfo is not None
    assert alert.ended_at > datetime(2026, 1, 1, tzinfo=UTC)


def test_go_html_escapes_come_back_as_the_characters() -> None:
    alert = parse_payload(fixture("firing_special_chars.json")).alerts[0]
    assert alert.labels["flow"] == "payments <EU> & transfers"
    assert "12 of 40 > 5 %" in alert.annotations["summary"]


def test_newer_alertmanager_fields_are_ignored() -> None:
    data = fixture_json("firing_error_rate.json")
    data["notification_reason"] = "first notification"
    data["routeLabels"] = {"team": "finance"}
    data["alerts"][0]["somethingNew"] = 1
    assert parse_payload(json.dumps(data).encode()).alerts[0].fingerprint


def test_alerts_are_frozen_and_hashable() -> None:
    payload = parse_payload(fixture("firing_latency_group.json"))
    alert = payload.alerts[0]
    with pytest.raises(ValueError):
        alert.status = "resolved"  # type: ignore[misc]
    assert len({*payload.alerts, *parse_payload(fixture("firing_latency_group.json")).alerts}) == 3


def test_invalid_json_is_named_as_such() -> None:
    with pytest.raises(PayloadError, match="not valid JSON"):
        parse_payload(b'{"version": "4",')


def test_a_json_array_is_not_a_payload() -> None:
    with pytest.raises(PayloadError, match="must be a JSON object"):
        parse_payload(b"[]")


def test_a_wrong_version_says_which_version_is_wanted() -> None:
    data = fixture_json("firing_error_rate.json")
    data["version"] = "3"
    with pytest.raises(PayloadError) as info:
        parse_payload(json.dumps(data))
    assert 'version must be "4"' in info.value.message
    assert "'3'" in info.value.message


def test_a_missing_field_is_named_with_its_path() -> None:
    data = fixture_json("firing_latency_group.json")
    del data["alerts"][1]["fingerprint"]
    with pytest.raises(PayloadError, match=r"alerts\[1\]\.fingerprint: required field missing"):
        parse_payload(json.dumps(data))


def test_a_bad_status_is_named_with_its_path() -> None:
    data = fixture_json("firing_error_rate.json")
    data["alerts"][0]["status"] = "burning"
    with pytest.raises(PayloadError, match=r"alerts\[0\]\.status"):
        parse_payload(json.dumps(data))


@pytest.mark.parametrize(
    ("text", "unit", "want"),
    [
        ("0.072", "ratio", 0.072),
        (" 1.234e+00 ", "seconds", 1.234),
        ("+Inf", "ratio", float("inf")),
        ("7.2%", "ratio", 0.072),  # humanizePercentage's rendering of 0.072
        ("95%", "percent", 95.0),
        ("95 %", "percent", 95.0),
        ("NaN", "ratio", None),
        ("n/a", "ratio", None),
        ("", "ratio", None),
        ("1.2s", "seconds", None),
    ],
)
def test_values_parse_as_prometheus_prints_them(text: str, unit: str, want: float | None) -> None:
    got = parse_number(text, unit)
    assert got == (pytest.approx(want) if want is not None else None)


def test_a_missing_annotation_has_no_value() -> None:
    alert = Alert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "X"},
            "startsAt": "2026-11-27T00:00:00Z",
            "fingerprint": "f",
        }
    )
    assert alert.value("value") is None
    assert alert.ended_at is None


def test_a_label_value_that_is_not_a_string_is_named() -> None:
    data = fixture_json("firing_error_rate.json")
    data["alerts"][0]["labels"]["replicas"] = 5
    with pytest.raises(PayloadError, match=r"alerts\[0\]\.labels\.replicas"):
        parse_payload(json.dumps(data))
