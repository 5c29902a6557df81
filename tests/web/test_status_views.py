"""GET /targets and GET /rollbacks: the same views as `receiver status` / `receiver history`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from kubernetes_asyncio.client import ApiClient

from receiver.config.store import ConfigStore
from receiver.domain.rollback import Phase, RollbackRecord
from receiver.http.app import Runtime, make_app
from receiver.http.handlers import CLUSTER_OBJECTS
from receiver.intake.deliveries import Service
from receiver.kube import Kube
from receiver.rollback.executor import new_record
from receiver.status.views import ClusterObjects, read_objects
from sim.kube import KubeSim
from tests.executor.conftest import decision
from tests.fixtures.receiver import ADMIN, TOKEN, FakeExecutor, FakeNotifier, FakeStates

ENV = {"RECEIVER_WEBHOOK_TOKEN": TOKEN, "RECEIVER_ADMIN_TOKEN": ADMIN}
AUTH = {"Authorization": f"Bearer {ADMIN}"}
NOW = datetime.now(UTC)


def finished(store: ConfigStore, days_ago: float) -> RollbackRecord:
    config = store.config
    r = new_record(decision(), config.targets[0], config, NOW - timedelta(days=days_ago))
    return replace(r, phase=Phase.SUCCEEDED, finished_at=r.started_at + timedelta(seconds=20))


@pytest.fixture
def store(config_file: Callable[..., Path]) -> ConfigStore:
    return ConfigStore(config_file(), env=ENV)


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[TestClient]], store: ConfigStore, kube_sim: KubeSim, kube_api: ApiClient,
) -> TestClient:
    """An app whose records are two finished rollbacks (1 and 10 days old), reading the simulator."""
    service = Service(lambda: store.config, FakeStates(), FakeExecutor(lambda: store.config), FakeNotifier(),
                      metrics=store.metrics)
    records = [finished(store, 1), finished(store, 10)]

    async def ok() -> None:
        return None

    async def listed() -> list[RollbackRecord]:
        return records

    app = make_app(Runtime(store=store, service=service, list_rollbacks=listed, kube_check=ok))

    async def objects() -> ClusterObjects:
        return await read_objects(Kube(kube_api), store.config)

    app[CLUSTER_OBJECTS] = objects
    return await aiohttp_client(app)


async def test_get_targets_shows_each_targets_phase_and_replicas_from_the_cluster(client: TestClient) -> None:
    resp = await client.get("/targets", headers=AUTH)
    assert resp.status == 200
    (t,) = (await resp.json())["targets"]
    assert t["name"] == "finance-service"
    assert t["phase"]["key"] == "week-1"
    assert (t["canary"]["replicas"], t["stable"]["replicas"]) == (1, 4)
    assert t["breaker"] == {"state": "closed", "opened_at": None, "targets": [], "reason": ""}


async def test_get_targets_follows_the_canary_when_it_is_scaled(client: TestClient, kube_sim: KubeSim) -> None:
    kube_sim.scale_as("finance", "finance-service-v2", 4)
    t = (await (await client.get("/targets?target=finance-service", headers=AUTH)).json())["targets"][0]
    assert t["phase"]["text"] == "week 3"


async def test_get_rollbacks_filters_by_since_and_keeps_the_history_shape(client: TestClient) -> None:
    week = await (await client.get("/rollbacks", headers=AUTH, params={"since": "7d"})).json()
    assert len(week["rollbacks"]) == 1
    entry = week["rollbacks"][0]
    assert (entry["outcome"], entry["recovery"]) == ("succeeded", {"outcome": "not measured"})
    assert entry["duration_seconds"] == 20
    everything = await (await client.get("/rollbacks", headers=AUTH)).json()
    assert len(everything["rollbacks"]) == 2


@pytest.mark.parametrize("path", [
    "/rollbacks?since=soon", "/rollbacks?target=nope", "/targets?target=nope", "/rollbacks?since=2999-01-01T00:00:00Z",
])
async def test_bad_query_values_get_400_naming_the_problem(client: TestClient, path: str) -> None:
    resp = await client.get(path, headers=AUTH)
    assert resp.status == 400
    body = await resp.json()
    assert ("since" in body["error"]) or ("unknown target 'nope'" in body["error"])


@pytest.mark.parametrize("path", ["/targets", "/rollbacks"])
async def test_the_views_need_the_admin_credential(client: TestClient, path: str) -> None:
    assert (await client.get(path)).status == 401
    assert (await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})).status in (401, 403)
