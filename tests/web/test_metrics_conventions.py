"""/metrics follows the conventions dashboards and alert rules already assume."""

from __future__ import annotations

import platform
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from receiver import __version__
from receiver.config.store import ConfigStore
from receiver.domain.decisions import DecisionKind
from receiver.http.app import Runtime, make_app
from receiver.intake.deliveries import Service
from receiver.metrics import Metrics
from tests.fixtures.receiver import ADMIN, BASE_CONFIG, TOKEN, FakeExecutor, FakeNotifier, FakeStates

ENV = {"RECEIVER_WEBHOOK_TOKEN": TOKEN, "RECEIVER_ADMIN_TOKEN": ADMIN}
Scrape = Callable[[], Awaitable[list[Sample]]]


async def start_app(
    aiohttp_client: Callable[..., Awaitable[TestClient]], config: Path, metrics: Metrics
) -> tuple[TestClient, ConfigStore]:
    store = ConfigStore(config, env=ENV, metrics=metrics)
    service = Service(lambda: store.config, FakeStates(), FakeExecutor(lambda: store.config), FakeNotifier(),
                      metrics=metrics)

    async def ok() -> None:
        return None

    async def none() -> list:
        return []

    app = make_app(Runtime(store=store, service=service, list_rollbacks=none, kube_check=ok,
                           watch_check=lambda: None))
    return await aiohttp_client(app), store


@pytest.fixture
async def running(
    aiohttp_client: Callable[..., Awaitable[TestClient]], config_file: Callable[..., Path], metrics: Metrics
) -> tuple[TestClient, ConfigStore]:
    return await start_app(aiohttp_client, config_file(), metrics)


async def scrape(client: TestClient) -> list[Sample]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    return next((s.value for s in samples if s.name == name and s.labels == labels), None)


async def test_process_and_python_metrics_are_exported(running: tuple[TestClient, ConfigStore]) -> None:
    samples = await scrape(running[0])
    names = {s.name for s in samples}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
            "python_info", "python_gc_collections_total"} <= names


async def test_build_info_names_the_version_and_python(running: tuple[TestClient, ConfigStore]) -> None:
    samples = await scrape(running[0])
    assert value(samples, "receiver_build_info", version=__version__, python=platform.python_version()) == 1


async def test_no_created_series_are_exported(running: tuple[TestClient, ConfigStore]) -> None:
    samples = await scrape(running[0])
    assert [s.name for s in samples if s.name.endswith("_created")] == []


async def test_every_configured_target_has_its_rollback_and_decision_series_at_start(
    running: tuple[TestClient, ConfigStore],
) -> None:
    samples = await scrape(running[0])
    assert value(samples, "receiver_rollbacks_started_total", target="finance-service") is not None
    for outcome in ("succeeded", "failed"):
        assert value(samples, "receiver_rollbacks_finished_total",
                     target="finance-service", outcome=outcome) is not None
    for kind in DecisionKind:
        assert value(samples, "receiver_decisions_total",
                     target="finance-service", decision=kind.value) is not None


async def test_a_target_added_by_a_reload_shows_zero_at_once(
    running: tuple[TestClient, ConfigStore], config_file: Callable[..., Path]
) -> None:
    client, store = running
    config_file(BASE_CONFIG + """
      - name: ledger-service-conventions
        namespace: ledger
        matchers: ['service="ledger-service"']
        stable: ledger-v1
        canary: ledger-v2
        replicas: 2
    """.replace("\n    ", "\n"))
    assert (await store.reload("test")).ok
    samples = await scrape(client)
    target = "ledger-service-conventions"
    assert value(samples, "receiver_rollbacks_started_total", target=target) == 0
    assert value(samples, "receiver_rollbacks_finished_total", target=target, outcome="failed") == 0
    assert value(samples, "receiver_decisions_total", target=target, decision="roll_back") == 0
    assert value(samples, "receiver_rollback_duration_seconds_count", target=target, outcome="failed") == 0


async def test_durations_are_in_seconds(running: tuple[TestClient, ConfigStore]) -> None:
    resp = await running[0].get("/metrics")
    families = list(text_string_to_metric_families(await resp.text()))
    timed = [f.name for f in families if f.type in ("histogram", "summary")]
    assert timed and all(name.endswith("_seconds") for name in timed), timed


async def test_two_receivers_in_one_process_each_export_only_their_own_counts(
    aiohttp_client: Callable[..., Awaitable[TestClient]], config_file: Callable[..., Path]
) -> None:
    """Tests and the demo run several receivers in one process: none sees another's counts."""
    a, _ = await start_app(aiohttp_client, config_file(), Metrics.create())
    b, _ = await start_app(aiohttp_client, config_file(), Metrics.create())
    for _ in range(3):
        assert (await a.post("/webhook", data=b"{}")).status == 401  # no credentials
    assert value(await scrape(a), "receiver_webhooks_total", outcome="unauthorized") == 3
    assert value(await scrape(b), "receiver_webhooks_total", outcome="unauthorized") == 0
    latency = "receiver_http_request_duration_seconds_count"
    assert value(await scrape(a), latency, route="/webhook", method="POST") == 3
    assert value(await scrape(b), latency, route="/webhook", method="POST") is None
