"""The webhook against the simulated cluster: the real TargetWatcher and Executor behind
the HTTP endpoint, so what a lagging watch or a missing Deployment does is seen as
Alertmanager and an SRE see it (the answer, the canary, /health, /metrics, the logs)."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient
from kubernetes_asyncio.client import ApiClient

from receiver.config.store import ConfigStore
from receiver.domain import messages
from receiver.http.app import Runtime, make_app
from receiver.intake.deliveries import Service
from receiver.kube.targets import TargetWatcher
from receiver.metrics import Metrics
from receiver.rollback.executor import Executor
from sim.kube import KubeSim
from tests.executor.conftest import CANARY, FAST_RETRY, NS, STABLE
from tests.fixtures.receiver import ADMIN, TOKEN, FakeNotifier, firing_payload

ENV = {"RECEIVER_WEBHOOK_TOKEN": TOKEN, "RECEIVER_ADMIN_TOKEN": ADMIN}
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = """
settings:
  lease_duration_seconds: 3
  verification_timeout_seconds: 20
rules:
  - name: error-rate
    matchers: ['alertname="HighErrorRate"']
    threshold: 0.05
    unit: ratio
targets:
  - name: finance-service
    namespace: finance
    matchers: ['service="finance-service"']
    stable: finance-service-v1
    canary: {canary}
    replicas: 5
"""


@dataclass
class Cluster:
    client: TestClient
    sim: KubeSim
    watcher: TargetWatcher
    notifier: FakeNotifier
    store: ConfigStore
    path: Path

    async def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        resp = await self.client.post("/webhook", data=body, headers=BEARER)
        return resp.status, await resp.json()

    def replicas(self, name: str) -> int:
        obj = self.sim.get("deployments", NS, name)
        assert obj is not None
        return int(obj["spec"]["replicas"])


Build = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def cluster(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path, kube_sim: KubeSim,
    kube_api: ApiClient, metrics: Metrics,
) -> AsyncIterator[Build]:
    watchers: list[TargetWatcher] = []
    executors: list[Executor] = []

    async def build(canary: str = CANARY) -> Cluster:
        path = tmp_path / "config.yaml"
        path.write_text(textwrap.dedent(CONFIG.format(canary=canary)))
        store = ConfigStore(path, env=ENV, metrics=metrics)
        watcher = TargetWatcher(kube_api, lambda: store.config, identity="receiver-a", metrics=metrics)
        watchers.append(watcher)
        await watcher.start()
        await watcher.wait_synced(5)
        executor = Executor(kube_api, lambda: store.config, "receiver-a", retry=FAST_RETRY, metrics=metrics)
        executors.append(executor)
        notifier = FakeNotifier()
        service = Service(lambda: store.config, watcher, executor, notifier, metrics=metrics)

        async def no_rollbacks() -> list[Any]:
            return []

        async def kube_ok() -> str | None:
            return None

        app = make_app(Runtime(store=store, service=service, list_rollbacks=no_rollbacks,
                               kube_check=kube_ok, watch_check=watcher.healthy))
        return Cluster(await aiohttp_client(app), kube_sim, watcher, notifier, store, path)

    yield build
    kube_sim.faults.release_watches()
    for ex in executors:
        await ex.close(timeout=1)
    for w in watchers:
        await w.stop()


async def _rolled_back_in_view(c: Cluster) -> None:
    c.sim.scale_as(NS, CANARY, 0, field_manager="kubectl")
    c.sim.scale_as(NS, STABLE, 5, field_manager="kubectl")
    await c.watcher.wait_for(
        lambda: c.watcher.states()["finance-service"].canary_replicas == 0
        and c.watcher.states()["finance-service"].stable_replicas == 5, timeout=5)


@pytest.mark.parametrize("resent", [False, True], ids=["first-delivery", "byte-identical-resend"])
async def test_an_alert_is_not_dropped_as_already_rolled_back_while_the_watch_lags(
    cluster: Build, resent: bool,
) -> None:
    c = await cluster()
    await _rolled_back_in_view(c)
    body = json.dumps(firing_payload()).encode()
    if resent:  # answered (and remembered) while the view was current and true
        status, answer = await c.post(body)
        assert (status, answer["decisions"][0]["decision"]) == (200, "already_rolled_back")
    # the Deployment watch is held back; meanwhile someone scales the canary up again
    c.sim.faults.hold_watches("deployments")
    c.sim.scale_as(NS, CANARY, 1, field_manager="kubectl")
    assert c.watcher.states()["finance-service"].canary_replicas == 0  # the view is behind

    status, answer = await c.post(body)

    assert status == 200
    assert answer["decisions"][0]["decision"] == "roll_back", answer
    assert len(answer["rollbacks"]) == 1
    c.sim.faults.release_watches()
    await c.sim.wait_for(lambda: c.replicas(CANARY) == 0, timeout=15)


async def test_a_burst_of_resent_deliveries_shares_its_confirming_reads(cluster: Build) -> None:
    c = await cluster()
    await _rolled_back_in_view(c)
    body = json.dumps(firing_payload()).encode()
    status, answer = await c.post(body)
    assert (status, answer["decisions"][0]["decision"]) == (200, "already_rolled_back")
    c.sim.faults.latency(0.5, verb="get", resource="deployments")  # an API server under load
    before = len(c.sim.requests.matching(verb="get", resource="deployments", name=CANARY))

    answers = await asyncio.gather(*(c.post(body) for _ in range(20)))

    assert all(s == 200 and a["decisions"][0]["decision"] == "already_rolled_back" for s, a in answers)
    reads = len(c.sim.requests.matching(verb="get", resource="deployments", name=CANARY)) - before
    assert 1 <= reads <= 4, reads  # not one per delivery


async def test_a_quiet_answer_the_api_cannot_confirm_is_503_so_alertmanager_retries(
    cluster: Build,
) -> None:
    c = await cluster()
    await _rolled_back_in_view(c)
    c.sim.faults.fail(verb="get", resource="deployments", status=403)

    status, answer = await c.post(json.dumps(firing_payload()).encode())

    assert status == 503, answer
    assert "could not confirm" in answer["error"]
    assert answer["decisions"][0]["decision"] == "already_rolled_back"


async def test_a_missing_canary_is_a_misconfiguration_said_everywhere_an_sre_looks(
    cluster: Build, capsys: pytest.CaptureFixture[str],
) -> None:
    from receiver import logs

    c = await cluster(canary="finance-service-v3")  # a typo: v3 does not exist
    saved = structlog.get_config()  # restored below: the configured file is capsys's
    logs.configure(json=True, level="info")
    try:
        status, answer = await c.post(json.dumps(firing_payload()).encode())
    finally:
        structlog.configure(**saved)

    # the answer: not a quiet 200, so Alertmanager sends it again once config is fixed
    assert status == 503
    decision = answer["decisions"][0]
    assert decision["decision"] == "misconfigured"
    assert "canary Deployment finance/finance-service-v3" in decision["reason"]
    # nothing was changed: no Lease taken, the real canary untouched
    assert c.sim.get("leases", NS, "rollback-finance-service") is None
    assert c.replicas(CANARY) == 1
    # the log: an error naming the missing object
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    errors = [x for x in lines if x["level"] == "error" and x["msg"] == "target_misconfigured"]
    assert errors and any("finance/finance-service-v3" in json.dumps(x) for x in errors), lines
    # Slack: one loud note naming it, however often Alertmanager retries
    await c.post(json.dumps(firing_payload()).encode())
    assert [d.kind.value for d, _ in c.notifier.told] == ["misconfigured"]
    told, _ = c.notifier.told[0]
    target = c.watcher.config_provider().targets[0]
    note = messages.decision_message(told, target)
    assert note is not None and "finance/finance-service-v3" in note.text
    # /health/ready stays 200 (the other targets' webhooks keep flowing) but names it
    ready = await c.client.get("/health/ready")
    body = await ready.json()
    assert ready.status == 200
    assert body["broken_targets"] == ["finance-service"]
    assert "finance/finance-service-v3 not found" in body["targets"]["finance-service"]
    full = await (await c.client.get("/health", headers={"Authorization": f"Bearer {ADMIN}"})).json()
    assert full["status"] == "degraded"
    assert "finance-service-v3" in full["targets"]["finance-service"]
    # and the gauge an alert rule can fire on
    metrics = await (await c.client.get("/metrics")).text()
    assert 'receiver_target_misconfigured{target="finance-service"} 1.0' in metrics


async def test_a_target_whose_deployments_exist_is_shown_healthy(cluster: Build) -> None:
    c = await cluster()
    body = await (await c.client.get("/health/ready")).json()
    assert body["targets"] == {"finance-service": "ok"}
    metrics = await (await c.client.get("/metrics")).text()
    assert 'receiver_target_misconfigured{target="finance-service"} 0.0' in metrics


async def test_once_the_typo_is_fixed_alertmanagers_next_resend_rolls_back(cluster: Build) -> None:
    c = await cluster(canary="finance-service-v3")
    body = json.dumps(firing_payload()).encode()
    assert (await c.post(body))[0] == 503  # so Alertmanager keeps the alert and re-sends it

    c.path.write_text(c.path.read_text().replace("finance-service-v3", CANARY))
    assert (await c.store.reload("test")).ok
    ready = await (await c.client.get("/health/ready")).json()
    assert ready["targets"] == {"finance-service": "ok"}
    metrics = await (await c.client.get("/metrics")).text()
    assert 'receiver_target_misconfigured{target="finance-service"} 0.0' in metrics

    status, answer = await c.post(body)
    assert status == 200 and answer["decisions"][0]["decision"] == "roll_back"
    await c.sim.wait_for(lambda: c.replicas(CANARY) == 0, timeout=15)
