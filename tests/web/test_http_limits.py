"""Slow or half-sent requests cannot pile up: the listener closes them, as a proxy would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from receiver.config.store import ConfigStore
from receiver.http.app import Runtime, make_app
from receiver.http.server import GuardedAppRunner, HttpLimits
from receiver.intake.deliveries import Service
from tests.fixtures.receiver import ADMIN, TOKEN, FakeExecutor, FakeNotifier, FakeStates, firing_payload

ENV = {"RECEIVER_WEBHOOK_TOKEN": TOKEN, "RECEIVER_ADMIN_TOKEN": ADMIN}
SHORT = HttpLimits(header_timeout=0.3, body_timeout=0.3, keepalive_timeout=30, max_connections=3)

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@pytest.fixture
async def listener(config_file: Callable[..., Path]) -> AsyncIterator[Connect]:
    """The receiver's real app behind the guarded runner, on a free local port."""
    store = ConfigStore(config_file(), env=ENV)
    service = Service(lambda: store.config, FakeStates(), FakeExecutor(lambda: store.config), FakeNotifier(),
                      metrics=store.metrics)

    async def ok() -> None:
        return None

    async def none() -> list:
        return []

    runner = GuardedAppRunner(
        make_app(Runtime(store=store, service=service, list_rollbacks=none, kube_check=ok)),
        limits=SHORT,
        access_log=None,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    opened: list[asyncio.StreamWriter] = []

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened.append(writer)
        return reader, writer

    try:
        yield connect
    finally:
        for w in opened:
            w.close()
        await runner.cleanup()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection (EOF)."""
    return await asyncio.wait_for(reader.read(), timeout=10)


async def test_a_connection_that_sends_half_its_headers_is_closed_after_the_header_timeout(listener: Connect) -> None:
    reader, writer = await listener()
    writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Le")
    await writer.drain()
    answer = await closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(listener: Connect) -> None:
    reader, _ = await listener()
    assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 408 ")


async def test_a_request_whose_body_stops_half_way_is_closed_after_the_body_timeout(listener: Connect) -> None:
    reader, writer = await listener()
    body = json.dumps(firing_payload()).encode()
    writer.write(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    await writer.drain()
    answer = await closed_by_server(reader)
    assert b" 200 " not in answer  # never handled as a (truncated) webhook


async def test_a_complete_request_is_answered_on_the_same_guarded_listener(listener: Connect) -> None:
    reader, writer = await listener()
    body = json.dumps(firing_payload()).encode()
    writer.write(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    answer = await closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


async def test_a_kept_alive_connection_that_starts_a_second_request_and_stalls_is_closed(listener: Connect) -> None:
    reader, writer = await listener()
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    assert status.startswith(b"HTTP/1.1 200 ")
    writer.write(b"GET /health/live HTTP/1.1\r\nHo")
    await writer.drain()
    rest = await closed_by_server(reader)
    assert b"408 Request Timeout" in rest


async def test_connections_beyond_the_limit_get_503_and_are_closed(listener: Connect) -> None:
    held = [await listener() for _ in range(SHORT.max_connections)]
    for _, w in held:  # each has started a request, so each is a live connection
        w.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        await w.drain()
    for r, _ in held:
        assert (await asyncio.wait_for(r.readline(), 10)).startswith(b"HTTP/1.1 200 ")
    reader, _ = await listener()
    answer = await closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1" in answer


async def test_answers_carry_no_server_version_banner(listener: Connect) -> None:
    reader, writer = await listener()
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await closed_by_server(reader)
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nserver:" not in head and b"aiohttp" not in head
