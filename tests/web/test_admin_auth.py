"""Admin JWTs are checked strictly, and rejected webhooks do not flood the log."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from receiver.config.credentials import RejectionLog
from receiver.config.store import ConfigStore
from receiver.http.app import Runtime, make_app
from receiver.intake.deliveries import Service
from tests.fixtures.receiver import ADMIN, TOKEN, FakeExecutor, FakeNotifier, FakeStates, firing_payload

ENV = {"RECEIVER_WEBHOOK_TOKEN": TOKEN, "RECEIVER_ADMIN_TOKEN": ADMIN}
KEY = "k" * 32


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[TestClient]], config_file: Callable[..., Path], tmp_path: Path
) -> TestClient:
    secret = tmp_path / "jwt"
    secret.write_text(KEY)
    path = config_file()
    path.write_text(path.read_text() + f"auth:\n  jwt_secret_file: {secret}\n")
    store = ConfigStore(path, env=ENV)
    service = Service(lambda: store.config, FakeStates(), FakeExecutor(lambda: store.config), FakeNotifier(),
                      metrics=store.metrics)

    async def ok() -> None:
        return None

    async def none() -> list:
        return []

    return await aiohttp_client(make_app(Runtime(store=store, service=service, list_rollbacks=none, kube_check=ok)))


def bearer(claims: dict[str, Any], key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm='HS256')}"}


def fresh(**claims: Any) -> dict[str, Any]:
    return {"sub": "grafana", "exp": int(time.time()) + 600, **claims}


async def test_a_jwt_granting_admin_monitoring_in_a_list_is_allowed(client: TestClient) -> None:
    assert (await client.get("/health", headers=bearer(fresh(permissions=["read", "admin:monitoring"])))).status == 200


async def test_a_jwt_granting_admin_monitoring_as_an_oauth_scope_word_is_allowed(client: TestClient) -> None:
    assert (await client.get("/rollbacks", headers=bearer(fresh(scope="openid admin:monitoring")))).status == 200


async def test_a_valid_jwt_without_the_permission_is_forbidden_not_unauthenticated(client: TestClient) -> None:
    resp = await client.get("/health", headers=bearer(fresh(permissions=["read"])))
    assert resp.status == 403
    assert "admin:monitoring" in (await resp.json())["error"]


async def test_a_jwt_without_exp_is_refused(client: TestClient) -> None:
    resp = await client.get("/health", headers=bearer({"sub": "grafana", "permissions": ["admin:monitoring"]}))
    assert resp.status == 401


async def test_an_expired_jwt_is_refused(client: TestClient) -> None:
    claims = {"sub": "grafana", "permissions": ["admin:monitoring"], "exp": int(time.time()) - 60}
    assert (await client.get("/health", headers=bearer(claims))).status == 401


@pytest.mark.parametrize(
    "claims",
    [
        {"permissions": "no-admin:monitoring-really"},
        {"permissions": "admin:monitoring"},  # a string is not the list the claim must be
        {"permissions": ["admin:monitoring-really"]},
        {"scope": "no-admin:monitoring-really"},
        {"scope": ["admin:monitoring"]},  # scope is a space-separated string (RFC 8693)
    ],
)
async def test_the_permission_is_matched_exactly_not_as_a_substring(
    client: TestClient, claims: dict[str, Any]
) -> None:
    assert (await client.get("/health", headers=bearer(fresh(**claims)))).status == 403


async def test_a_jwt_signed_with_another_key_is_unauthenticated(client: TestClient) -> None:
    resp = await client.get("/health", headers=bearer(fresh(permissions=["admin:monitoring"]), key="x" * 32))
    assert resp.status == 401


async def test_many_rejected_webhooks_from_one_source_log_one_warning(client: TestClient) -> None:
    with capture_logs() as logs:
        for _ in range(30):
            headers = {"Authorization": "Bearer not-the-t0ken"}
            resp = await client.post("/webhook", json=firing_payload(), headers=headers)
            assert resp.status == 401
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["webhook_unauthorized"]
    assert "not-the-t0ken" not in repr(warnings)  # never the offered credential


def test_rejections_beyond_the_first_are_summed_up_once_the_window_ends() -> None:
    now = [1000.0]
    rejections = RejectionLog(window_seconds=60, clock=lambda: now[0])
    with capture_logs() as logs:
        for _ in range(5):
            rejections.rejected("10.0.0.1")
        rejections.rejected("10.0.0.2")
        now[0] += 61
        rejections.rejected("10.0.0.1")
    assert [(e["event"], e.get("remote"), e.get("count")) for e in logs] == [
        ("webhook_unauthorized", "10.0.0.1", None),
        ("webhook_unauthorized", "10.0.0.2", None),
        ("webhook_unauthorized_suppressed", None, 4),
        ("webhook_unauthorized", "10.0.0.1", None),
    ]
