"""/health and the webhook answer name the mute that holds now, and only while it holds."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from receiver.config.store import ConfigStore
from receiver.http.app import Runtime, make_app
from receiver.intake.deliveries import Service
from tests.fixtures.receiver import ADMIN, BASE_CONFIG, TOKEN, FakeExecutor, FakeNotifier, FakeStates, firing_payload

ENV = {"RECEIVER_WEBHOOK_TOKEN": TOKEN, "RECEIVER_ADMIN_TOKEN": ADMIN}
PAST, FUTURE = "2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"
Client = Callable[[str, str], Awaitable[TestClient]]


@pytest.fixture
def client_for(aiohttp_client: Callable[..., Awaitable[TestClient]], config_file: Callable[..., Path]) -> Client:
    """A receiver whose config has the given global and target mute lines (YAML flow maps)."""

    async def make(global_mute: str, target_mute: str) -> TestClient:
        text = BASE_CONFIG.replace("  max_body_bytes: 65536\n", f"  max_body_bytes: 65536\n{global_mute}")
        store = ConfigStore(config_file(text.replace("    replicas: 5\n", f"    replicas: 5\n{target_mute}")), env=ENV)
        service = Service(lambda: store.config, FakeStates(), FakeExecutor(lambda: store.config), FakeNotifier(),
                          metrics=store.metrics)

        async def none() -> list:
            return []

        async def kube_ok() -> str | None:
            return None

        app = make_app(Runtime(store=store, service=service, list_rollbacks=none, kube_check=kube_ok))
        return await aiohttp_client(app)

    return make


def mute(indent: int, by: str, reason: str, until: str | None) -> str:
    fields = f"by: {by}, reason: {reason}" + (f", until: '{until}'" if until else "")
    return f"{' ' * indent}mute: {{{fields}}}\n"


async def health_config(client: TestClient) -> dict:
    resp = await client.get("/health", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status == 200
    return (await resp.json())["config"]


async def test_an_expired_global_mute_is_not_reported_as_muted(client_for: Client) -> None:
    client = await client_for(mute(2, "alice", "release freeze", PAST), "")
    config = await health_config(client)
    assert config["muted"] is False
    assert config["mute"] is None and config["muted_targets"] == {}


async def test_health_names_the_active_global_mute_with_its_end(client_for: Client) -> None:
    client = await client_for(mute(2, "alice", "release freeze", FUTURE), mute(4, "alice", "old investigation", PAST))
    config = await health_config(client)
    applied = {"scope": "global", "source": "config", "by": "alice", "reason": "release freeze",
               "until": "2099-01-01T00:00:00+00:00"}
    assert config["muted"] is True
    assert config["mute"] == applied
    assert config["muted_targets"] == {"finance-service": applied}


async def test_health_names_a_target_mute_that_holds_until_removed(client_for: Client) -> None:
    client = await client_for("", mute(4, "sam", "digging in", None))
    config = await health_config(client)
    assert config["muted"] is False
    assert config["muted_targets"] == {"finance-service": {"scope": "target", "source": "config", "by": "sam",
                                                           "reason": "digging in", "until": None}}


async def test_the_webhook_answer_gives_the_global_mute_over_an_expired_target_mute_by_the_same_person(
    client_for: Client,
) -> None:
    client = await client_for(mute(2, "alice", "release freeze", FUTURE), mute(4, "alice", "old investigation", PAST))
    resp = await client.post("/webhook", data=json.dumps(firing_payload()),
                             headers={"Authorization": f"Bearer {TOKEN}"})
    [d] = (await resp.json())["decisions"]
    assert d["decision"] == "muted"
    assert d["reason"].startswith("all targets muted by alice until 2099-01-01 00:00:00 UTC (release freeze)")
    assert "old investigation" not in d["reason"]
