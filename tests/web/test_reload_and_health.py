"""Operators change config.yaml under a running receiver; a bad file never wins."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from receiver.config.store import ConfigStore
from receiver.domain.settings import ConfigError
from receiver.http.app import Runtime, make_app
from receiver.intake.deliveries import Service
from tests.fixtures.receiver import ADMIN, TOKEN, FakeExecutor, FakeNotifier, FakeStates

ENV = {"RECEIVER_WEBHOOK_TOKEN": TOKEN, "RECEIVER_ADMIN_TOKEN": ADMIN}
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
API_ERROR: dict[int, list[str | None]] = {}  # per store: what the fake readiness check answers


@pytest.fixture
async def app_client(
    aiohttp_client: Callable[..., Awaitable[TestClient]], config_file: Callable[..., Path]
) -> tuple[TestClient, ConfigStore]:
    store = ConfigStore(config_file(), env=ENV, poll_seconds=0.02)
    service = Service(lambda: store.config, FakeStates(), FakeExecutor(lambda: store.config), FakeNotifier(),
                      metrics=store.metrics)
    api_error: list[str | None] = [None, None]  # [API server check, watches check]

    async def kube_check() -> str | None:
        return api_error[0]

    async def none() -> list:
        return []

    def watch_check() -> str | None:
        return api_error[1]

    app = make_app(
        Runtime(store=store, service=service, list_rollbacks=none, kube_check=kube_check, watch_check=watch_check)
    )
    client = await aiohttp_client(app)
    API_ERROR[id(store)] = api_error
    return client, store


def test_the_receiver_refuses_to_start_without_webhook_credentials(config_file: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match="no webhook credentials"):
        ConfigStore(config_file(), env={})


def test_the_insecure_flag_lets_it_start_without_credentials(config_file: Callable[..., Path]) -> None:
    store = ConfigStore(config_file(), env={}, insecure=True)
    assert store.credentials.webhook_allowed(None)


async def test_reload_endpoint_applies_a_good_file(
    app_client: tuple[TestClient, ConfigStore], config_file: Callable[..., Path]
) -> None:
    client, store = app_client
    config_file(config_file().read_text().replace("max_body_bytes: 65536", "max_body_bytes: 65536\n  dry_run: true"))
    resp = await client.post("/-/reload", headers=ADMIN_H)
    assert resp.status == 200 and (await resp.json())["changed"] is True
    assert store.config.settings.dry_run is True


async def test_a_bad_file_keeps_the_last_good_config_and_health_shows_the_error(
    app_client: tuple[TestClient, ConfigStore], config_file: Callable[..., Path]
) -> None:
    client, store = app_client
    good = store.config
    config_file(config_file().read_text().replace("max_body_bytes", "max_body_bytez"))
    resp = await client.post("/-/reload", headers=ADMIN_H)
    body = await resp.json()
    assert resp.status == 400 and "settings.max_body_bytez: unknown key" in body["error"]
    assert store.config is good
    health = await (await client.get("/health", headers=ADMIN_H)).json()
    assert health["status"] == "degraded"
    assert "max_body_bytez" in health["config"]["last_reload"]["error"]
    metrics = await (await client.get("/metrics")).text()
    assert 'receiver_config_reloads_total{result="failure"} 1.0' in metrics
    assert "receiver_config_last_reload_successful 0.0" in metrics


async def test_reload_requires_the_admin_credential(app_client: tuple[TestClient, ConfigStore]) -> None:
    client, _ = app_client
    assert (await client.post("/-/reload", headers={"Authorization": f"Bearer {TOKEN}"})).status == 401


async def test_a_changed_file_is_picked_up_without_a_restart(
    app_client: tuple[TestClient, ConfigStore], config_file: Callable[..., Path]
) -> None:
    _, store = app_client
    reloaded = asyncio.Event()
    store.listeners.append(lambda _c: reloaded.set())
    store.start_watching()
    try:
        config_file(
            config_file().read_text().replace("max_body_bytes: 65536", "enabled: false\n  max_body_bytes: 65536")
        )
        await asyncio.wait_for(reloaded.wait(), 5)
        assert store.config.settings.enabled is False
    finally:
        await store.stop_watching()


async def test_sighup_reloads_the_config(
    app_client: tuple[TestClient, ConfigStore], config_file: Callable[..., Path]
) -> None:
    from receiver.cli.serve import install_sighup

    _, store = app_client
    reloaded = asyncio.Event()
    store.listeners.append(lambda _c: reloaded.set())
    install_sighup(store)
    try:
        config_file(
            config_file().read_text().replace("max_body_bytes: 65536", "dry_run: true\n  max_body_bytes: 65536")
        )
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.wait_for(reloaded.wait(), 5)
        assert store.config.settings.dry_run is True
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


async def test_liveness_answers_without_credentials_and_reports_memory(
    app_client: tuple[TestClient, ConfigStore],
) -> None:
    client, _ = app_client
    body = await (await client.get("/health/live")).json()
    assert body["status"] == "alive" and body["memory_rss_bytes"] > 0


async def test_readiness_fails_with_the_reason_when_the_api_server_is_unreachable(
    app_client: tuple[TestClient, ConfigStore],
) -> None:
    client, store = app_client
    assert (await client.get("/health/ready")).status == 200
    API_ERROR[id(store)][0] = "connection refused"
    resp = await client.get("/health/ready")
    assert resp.status == 503 and (await resp.json())["checks"]["kubernetes"] == "connection refused"


async def test_readiness_fails_when_a_target_watch_keeps_failing(app_client: tuple[TestClient, ConfigStore]) -> None:
    client, store = app_client
    API_ERROR[id(store)][1] = "deployments watch in finance failing (5 attempts): 403 Forbidden"
    resp = await client.get("/health/ready")
    body = await resp.json()
    assert resp.status == 503 and "403 Forbidden" in body["checks"]["watches"]


async def test_full_health_needs_an_admin_token_or_jwt(
    app_client: tuple[TestClient, ConfigStore], config_file: Callable[..., Path], tmp_path: Path
) -> None:
    import jwt

    client, store = app_client
    assert (await client.get("/health")).status == 401
    assert (await client.get("/health", headers=ADMIN_H)).status == 200
    secret = tmp_path / "jwt"
    secret.write_text("k" * 32)
    config_file(config_file().read_text() + f"auth:\n  jwt_secret_file: {secret}\n")
    assert (await store.reload("test")).ok
    exp = int(time.time()) + 600
    granted = jwt.encode(
        {"sub": "grafana", "permissions": ["admin:monitoring"], "exp": exp}, "k" * 32, algorithm="HS256"
    )
    denied = jwt.encode({"sub": "bob", "permissions": ["read"], "exp": exp}, "k" * 32, algorithm="HS256")
    assert (await client.get("/health", headers={"Authorization": f"Bearer {granted}"})).status == 200
    assert (await client.get("/health", headers={"Authorization": f"Bearer {denied}"})).status == 403


async def test_a_file_that_is_not_utf8_is_refused_and_the_watch_keeps_going(
    app_client: tuple[TestClient, ConfigStore], config_file: Callable[..., Path]
) -> None:
    _, store = app_client
    good_text = config_file().read_text()
    results: list[bool] = []
    changed, failed = asyncio.Event(), asyncio.Event()
    store.listeners.append(lambda _c: changed.set())
    store.observers.append(lambda r: r.ok or failed.set())
    store.start_watching()
    try:
        store.path.write_bytes(good_text.replace("max_body_bytes", "# caf\xe9\n  max_body_bytes").encode("latin-1"))
        await asyncio.wait_for(failed.wait(), 5)
        results.append(store.last_reload.ok)
        assert "not UTF-8" in (store.last_reload.error or "")
        config_file(good_text.replace("max_body_bytes: 65536", "dry_run: true\n  max_body_bytes: 65536"))
        await asyncio.wait_for(changed.wait(), 5)
        assert store.config.settings.dry_run is True and results == [False]
    finally:
        await store.stop_watching()
