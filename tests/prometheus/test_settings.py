"""The prometheus section of config.yaml: http_config's shape, dangerous settings refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from receiver.domain.prometheus_settings import PrometheusSettings
from receiver.prometheus.client import Backoff


def test_a_plain_url_is_enough_and_the_decision_waits_two_seconds_at_most() -> None:
    s = PrometheusSettings.model_validate({"url": "http://prometheus.monitoring:9090/"})
    assert s.url == "http://prometheus.monitoring:9090"
    assert s.decision_wait_seconds == 2.0
    assert s.authorization is None and s.basic_auth is None


def test_the_older_bearer_token_file_spelling_is_read_as_authorization() -> None:
    s = PrometheusSettings.model_validate({"url": "https://p:9090", "bearer_token_file": "/var/run/token"})
    assert s.authorization is not None
    assert s.authorization.credentials_file == Path("/var/run/token")
    assert s.authorization.type == "Bearer"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"url": "prometheus:9090"}, "http:// or https:// URL"),
        ({"url": "https://admin:hunter2@p:9090"}, "must not carry credentials"),
        ({"url": "http://p:9090/?x=1"}, "must not carry a query"),
        ({"url": "http://p:9090", "tls_config": {"ca_file": "/ca.pem"}}, "needs an https:// url"),
        ({"url": "http://p:9090", "tls_config": {"insecure_skip_verify": True}}, "Extra inputs"),
        (
            {"url": "http://p", "authorization": {"credentials_file": "/t"},
             "basic_auth": {"username": "u", "password_file": "/p"}},
            "at most one of authorization and basic_auth",
        ),
        (
            {"url": "http://p", "bearer_token_file": "/a", "authorization": {"credentials_file": "/t"}},
            "the same setting",
        ),
        ({"url": "http://p", "authorization": {"type": "Basic", "credentials_file": "/t"}}, "'Bearer'"),
        ({"url": "http://p", "authorization": {"credentials": "xyz"}}, "Extra inputs"),
        ({"url": "http://p", "decision_wait_seconds": 0}, "greater than 0"),
        ({"url": "http://p", "decision_wait_seconds": 60}, "less than or equal to 30"),
    ],
)
def test_a_prometheus_section_that_cannot_work_safely_is_refused(data: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        PrometheusSettings.model_validate(data)


def test_a_password_in_the_url_is_not_repeated_in_the_message_check_config_prints() -> None:
    with pytest.raises(ValidationError) as caught:
        PrometheusSettings.model_validate({"url": "https://admin:hunter2@p:9090"})
    messages = [e["msg"] for e in caught.value.errors()]  # what config loading reports
    assert messages and all("hunter2" not in m for m in messages)


def test_retries_back_off_exponentially_with_jitter_up_to_a_cap() -> None:
    b = Backoff(first=0.1, factor=2, cap=1.0)
    assert [b.delay(n, 0.0) for n in (1, 2, 3, 4, 5, 6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert [b.delay(n, 0.999999) for n in (1, 6)] == pytest.approx([0.1, 1.0])
