"""The webhook as Alertmanager sees it: codes, credentials, limits, decisions.

The executor and notifier are plain fakes here (the service's ports); the real ones
are exercised against the simulators in tests/e2e and tests/executor.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from aiohttp.test_utils import TestClient

from receiver.config.store import ConfigStore
from receiver.domain.decisions import TargetState
from receiver.http.app import Runtime, make_app
from receiver.intake.deliveries import Service
from receiver.metrics import Metrics
from tests.fixtures.receiver import (
    ADMIN,
    TOKEN,
    FakeExecutor,
    FakeNotifier,
    FakeStates,
    firing_payload,
)

ENV = {"RECEIVER_WEBHOOK_TOKEN": f"{TOKEN},rotated-token-2", "RECEIVER_ADMIN_TOKEN": ADMIN}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Harness:
    client: TestClient
    store: ConfigStore
    executor: FakeExecutor
    notifier: FakeNotifier
    states: FakeStates

    async def post(self, body: object, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp = await self.client.post("/webhook", data=data, headers=BEARER if headers is None else headers)
        return resp.status, await resp.json()


@pytest.fixture
async def harness(aiohttp_client: Callable[..., Awaitable[TestClient]], config_file: Callable[..., Path],
                  metrics: Metrics) -> Harness:
    store = ConfigStore(config_file(), env=ENV, poll_seconds=0.05, metrics=metrics)
    executor, notifier, states = FakeExecutor(lambda: store.config), FakeNotifier(), FakeStates()
    service = Service(lambda: store.config, states, executor, notifier, metrics=metrics)

    async def no_rollbacks() -> list:
        return []

    async def kube_ok() -> str | None:
        return None

    app = make_app(Runtime(store=store, service=service, list_rollbacks=no_rollbacks, kube_check=kube_ok))
    return Harness(await aiohttp_client(app), store, executor, notifier, states)


async def test_a_critical_alert_above_threshold_is_answered_200_after_the_rollback_is_claimed(harness: Harness) -> None:
    status, body = await harness.post(firing_payload("0.072"))
    assert status == 200
    assert [d["decision"] for d in body["decisions"]] == ["roll_back"]
    assert body["decisions"][0]["fingerprints"] == ["55700370c855a6aa"]
    assert len(harness.executor.started) == 1 and body["rollbacks"] == [harness.executor.started[0].id]


async def test_a_repeated_delivery_starts_no_second_rollback(harness: Harness) -> None:
    await harness.post(firing_payload())
    status, body = await harness.post(firing_payload())
    assert status == 200
    assert body["decisions"][0]["decision"] == "in_progress"
    assert len(harness.executor.started) == 1


async def test_when_the_intent_cannot_be_recorded_the_answer_is_503_so_alertmanager_retries(harness: Harness) -> None:
    harness.executor.fail_with = ConnectionError("API server unreachable")
    status, body = await harness.post(firing_payload())
    assert status == 503
    assert "API server unreachable" in body["error"]
    assert harness.executor.started == []


async def test_no_credentials_get_401_and_nothing_happens(harness: Harness) -> None:
    status, body = await harness.post(firing_payload(), headers={})
    assert status == 401 and "credentials" in body["error"]
    assert harness.executor.claimed == []


async def test_a_wrong_token_gets_401_and_nothing_happens(harness: Harness) -> None:
    status, _ = await harness.post(firing_payload(), headers={"Authorization": "Bearer nope"})
    assert status == 401
    assert harness.executor.claimed == []


async def test_both_tokens_of_a_rotation_are_accepted(harness: Harness) -> None:
    status, _ = await harness.post(firing_payload(), headers={"Authorization": "Bearer rotated-token-2"})
    assert status == 200


async def test_basic_auth_as_alertmanager_sends_it_is_accepted(
    harness: Harness, config_file: Callable[..., Path], tmp_path: Path
) -> None:
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    text = config_file().read_text() + f"auth:\n  basic_auth:\n    - username: am\n      password_file: {pw}\n"
    config_file(text)
    assert (await harness.store.reload("test")).ok
    good = base64.b64encode(b"am:hunter2").decode()
    bad = base64.b64encode(b"am:hunter3").decode()
    assert (await harness.post(firing_payload(), {"Authorization": f"Basic {good}"}))[0] == 200
    assert (await harness.post(firing_payload(), {"Authorization": f"Basic {bad}"}))[0] == 401


async def test_a_body_that_is_not_json_gets_400_naming_the_problem(harness: Harness) -> None:
    status, body = await harness.post(b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]
    assert harness.executor.claimed == []


async def test_a_payload_of_another_version_gets_400_naming_the_version(harness: Harness) -> None:
    payload = firing_payload()
    payload["version"] = "3"
    status, body = await harness.post(payload)
    assert status == 400 and '"4"' in body["error"]


async def test_a_payload_missing_alerts_gets_400_naming_the_field(harness: Harness) -> None:
    payload = firing_payload()
    del payload["alerts"]
    status, body = await harness.post(payload)
    assert status == 400 and "alerts" in body["error"]


async def test_a_body_over_the_limit_gets_413_and_changes_nothing(harness: Harness) -> None:
    payload = firing_payload()
    payload["commonAnnotations"] = {"pad": "x" * 70000}
    status, body = await harness.post(payload)
    assert status == 413 and "max_body_bytes" in body["error"]
    assert harness.executor.claimed == []


async def test_newer_alertmanager_fields_are_accepted(harness: Harness) -> None:
    payload = firing_payload()
    payload["notification_reason"] = "first notification"
    payload["routeLabels"] = {"team": "finance"}
    assert (await harness.post(payload))[0] == 200


async def test_a_muted_target_is_told_once_and_never_rolled_back(
    harness: Harness, config_file: Callable[..., Path]
) -> None:
    text = (
        config_file()
        .read_text()
        .replace(
            "    replicas: 5\n",
            "    replicas: 5\n    mute: {reason: planned load test, by: alice, until: '2099-01-01T00:00:00Z'}\n",
        )
    )
    config_file(text)
    assert (await harness.store.reload("test")).ok
    for _ in range(2):
        status, body = await harness.post(firing_payload())
        assert status == 200 and body["decisions"][0]["decision"] == "muted"
    assert harness.executor.claimed == []
    assert [d.kind.value for d, _ in harness.notifier.told] == ["muted"]
    assert "alice" in harness.notifier.told[0][0].reason


async def test_a_target_already_back_on_stable_is_left_alone(harness: Harness) -> None:
    harness.states.values["finance-service"] = TargetState(
        canary_replicas=0, stable_replicas=5, stable_ready=5, stable_exists=True
    )
    status, body = await harness.post(firing_payload())
    assert status == 200 and body["decisions"][0]["decision"] == "already_rolled_back"
    assert harness.executor.claimed == []


async def test_the_decision_and_its_reason_are_counted_in_metrics(harness: Harness, metrics: Metrics) -> None:
    def count() -> float:
        return metrics.value("receiver_alerts_total", decision="no_rule_matched", reason="below_threshold")

    await harness.post(firing_payload("0.02"))
    await harness.post(firing_payload("0.02"))  # a byte-identical repeat counts too
    assert count() == 2
    text = await (await harness.client.get("/metrics")).text()
    assert 'receiver_alerts_total{decision="no_rule_matched",reason="below_threshold"}' in text


async def test_a_byte_identical_repeat_is_decided_afresh_once_the_cluster_changed(harness: Harness) -> None:
    harness.states.values["finance-service"] = TargetState(
        canary_replicas=0, stable_replicas=5, stable_ready=5, stable_exists=True
    )
    for _ in range(2):
        status, body = await harness.post(firing_payload())
        assert status == 200 and body["decisions"][0]["decision"] == "already_rolled_back"
    # someone scaled the canary back up: the same delivery must now roll back
    harness.states.values = {
        "finance-service": TargetState(canary_replicas=1, stable_replicas=4, stable_ready=4, stable_exists=True)
    }
    status, body = await harness.post(firing_payload())
    assert status == 200 and body["decisions"][0]["decision"] == "roll_back"
    assert len(harness.executor.started) == 1


async def test_a_repeat_after_a_config_reload_is_decided_with_the_new_config(
    harness: Harness, config_file: Callable[..., Path]
) -> None:
    harness.states.values["finance-service"] = TargetState(
        canary_replicas=0, stable_replicas=5, stable_ready=5, stable_exists=True
    )
    assert (await harness.post(firing_payload()))[1]["decisions"][0]["decision"] == "already_rolled_back"
    config_file(config_file().read_text().replace("max_body_bytes: 65536", "max_body_bytes: 65536\n  enabled: false"))
    assert (await harness.store.reload("test")).ok
    assert (await harness.post(firing_payload()))[1]["decisions"][0]["decision"] == "disabled"


async def test_after_a_503_alertmanagers_retry_starts_exactly_one_rollback(harness: Harness) -> None:
    harness.executor.fail_with = ConnectionError("API server unreachable")
    assert (await harness.post(firing_payload()))[0] == 503
    harness.executor.fail_with = None  # the API server is back when Alertmanager retries
    status, body = await harness.post(firing_payload())
    assert status == 200 and body["decisions"][0]["decision"] == "roll_back"
    status, body = await harness.post(firing_payload())  # and its next group_interval re-send
    assert status == 200 and body["decisions"][0]["decision"] == "in_progress"
    assert len(harness.executor.started) == 1


async def test_a_chunked_body_over_the_limit_gets_413(harness: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for _ in range(64):
            yield b"x" * 16384

    resp = await harness.client.post("/webhook", data=chunks(), headers=BEARER)
    assert resp.status == 413
    assert harness.executor.claimed == []


async def test_every_log_line_of_a_webhook_carries_the_request_id_target_fingerprints_and_decision(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    from receiver import logs

    saved = structlog.get_config()  # restored below: the configured file is capsys's
    logs.configure(json=True, level="info")
    try:
        await harness.post(firing_payload(), headers={**BEARER, "X-Request-Id": "req-42"})
    finally:
        structlog.configure(**saved)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    decided = [line for line in lines if line["msg"] == "decided"]
    assert decided, lines
    for line in decided:
        assert line["request_id"] == "req-42"
        assert line["target"] == "finance-service"
        assert line["fingerprints"] == ["55700370c855a6aa"]
        assert line["decision"] == "roll_back"
    assert TOKEN not in "\n".join(json.dumps(line) for line in lines)


async def test_a_delivery_whose_claim_finds_the_rollback_running_is_logged_as_in_progress(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    from receiver import logs

    await harness.post(firing_payload())  # claims the target
    capsys.readouterr()
    saved = structlog.get_config()  # restored below: the configured file is capsys's
    logs.configure(json=True, level="info")
    try:
        status, body = await harness.post(firing_payload(fingerprint="0123456789abcdef"))
    finally:
        structlog.configure(**saved)
    assert status == 200 and body["decisions"][0]["decision"] == "in_progress"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    decided = [line for line in lines if line["msg"] == "decided"]
    assert [(x["decision"], x["reason"]) for x in decided] == [("in_progress", body["decisions"][0]["reason"])]


def _quiet_group(n: int, alerts: int = 100) -> bytes:
    """A distinct group of ``alerts`` alerts below the threshold (no_rule_matched: quiet)."""
    one = firing_payload("0.01")
    template = one["alerts"][0]
    one["alerts"] = [{**template, "fingerprint": f"{n:08x}{i:08x}"} for i in range(alerts)]
    one["groupKey"] = f"{{}}:{{group=\"{n}\"}}"
    return json.dumps(one).encode()


def _cache_bytes(text: str, cache: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'receiver_cache_bytes{{cache="{cache}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no receiver_cache_bytes for {cache} in /metrics")


async def test_the_repeat_cache_stays_within_its_byte_budget_whatever_the_bodies(
    aiohttp_client: Callable[..., Awaitable[TestClient]], config_file: Callable[..., Path]
) -> None:
    budget = 64 * 1024
    store = ConfigStore(config_file(), env=ENV)
    service = Service(lambda: store.config, FakeStates(), FakeExecutor(lambda: store.config), FakeNotifier(),
                      repeat_cache_bytes=budget, metrics=store.metrics)

    async def no_rollbacks() -> list:
        return []

    async def kube_ok() -> str | None:
        return None

    client = await aiohttp_client(make_app(Runtime(store=store, service=service,
                                                    list_rollbacks=no_rollbacks, kube_check=kube_ok)))
    bodies = [_quiet_group(n) for n in range(80)]  # ~40 KB each, 3 MB in all
    for body in bodies:
        resp = await client.post("/webhook", data=body, headers=BEARER)
        assert resp.status == 200
    first = await (await client.get("/metrics")).text()
    held = _cache_bytes(first, "repeat")
    assert 0 < held <= budget
    # the newest bodies are still answered, the same as the first time
    again = await client.post("/webhook", data=bodies[-1], headers=BEARER)
    answer = await again.json()
    assert answer["decisions"][0]["decision"] == "no_rule_matched"
    assert len(answer["decisions"][0]["fingerprints"]) == 100
    assert _cache_bytes(await (await client.get("/metrics")).text(), "repeat") <= budget


async def test_the_memory_of_what_slack_was_told_stays_within_its_byte_budget(
    aiohttp_client: Callable[..., Awaitable[TestClient]], config_file: Callable[..., Path]
) -> None:
    budget = 8 * 1024
    text = config_file().read_text().replace(
        "    replicas: 5\n",
        "    replicas: 5\n    mute: {reason: planned load test, by: alice, until: '2099-01-01T00:00:00Z'}\n",
    )
    store = ConfigStore(config_file(text), env=ENV)
    notifier = FakeNotifier()
    service = Service(lambda: store.config, FakeStates(), FakeExecutor(lambda: store.config), notifier,
                      told_cache_bytes=budget, metrics=store.metrics)

    async def no_rollbacks() -> list:
        return []

    async def kube_ok() -> str | None:
        return None

    client = await aiohttp_client(make_app(Runtime(store=store, service=service,
                                                    list_rollbacks=no_rollbacks, kube_check=kube_ok)))
    for n in range(120):  # muted groups of 100 alerts each: every one is told once
        body = json.loads(_quiet_group(n))
        for alert in body["alerts"]:
            alert["annotations"]["value"] = "0.2"
        resp = await client.post("/webhook", data=json.dumps(body).encode(), headers=BEARER)
        assert resp.status == 200 and (await resp.json())["decisions"][0]["decision"] == "muted"
    assert len(notifier.told) == 120
    held = _cache_bytes(await (await client.get("/metrics")).text(), "told")
    assert 0 < held <= budget
