"""The HTTP listener's limits, as a reverse proxy in front of it would set them.

aiohttp bounds idle keep-alive connections but has no header or body read timeout and
no connection limit, so a client that sends half a request holds a socket and its
buffers for good. The guard below closes a connection whose request headers are not
complete ``header_timeout`` s after its first byte (or after the connection opened),
or whose body is not complete ``body_timeout`` s after its headers, and answers 503
(``Connection: close``, ``Retry-After``) to connections beyond ``max_connections``:
Alertmanager retries a 5xx, and the process keeps its file descriptors.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web, web_protocol, web_server
from aiohttp.streams import StreamReader

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class HttpLimits:
    """Defaults of a typical reverse proxy (nginx: client_header_timeout, keepalive)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    max_connections: int = 1000


def _raw_response(status: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"status": "error", "error": message}).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_TOO_MANY = _raw_response("503 Service Unavailable", "too many connections, retry", "Retry-After: 1\r\n")
_HEADER_TIMEOUT = _raw_response("408 Request Timeout", "request headers not received in time")


class _GuardedHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler with header/body deadlines and a connection cap."""

    def __init__(self, manager: _GuardedServer, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._limits = manager.limits
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._manager
        if server is not None and len(server.connections) >= self._limits.max_connections:
            self._refused = True
            assert isinstance(transport, asyncio.Transport)
            transport.write(_TOO_MANY)
            transport.close()
            assert isinstance(server, _GuardedServer)
            server.note_refused()
            return
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_timers()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        waiter = self._waiter
        idle = waiter is not None and not waiter.done() and not self._messages
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:  # a request's headers are complete
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            if self._messages:
                payload = self._messages[-1][1]
                if isinstance(payload, StreamReader) and not payload.is_eof():
                    self._arm_body_timer(payload)
        elif idle and self._header_timer is None and data:
            self._arm_header_timer()  # the first bytes of the next request on a kept-alive connection
        if self._body is not None and self._body.is_eof():
            self._cancel_body_timer()

    def _arm_header_timer(self) -> None:
        self._header_timer = self._loop.call_later(self._limits.header_timeout, self._header_timed_out)

    def _arm_body_timer(self, payload: StreamReader) -> None:
        self._cancel_body_timer()
        self._body = payload
        self._body_timer = self._loop.call_later(self._limits.body_timeout, self._body_timed_out)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = None
        self._body = None

    def _cancel_timers(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._cancel_body_timer()

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport is not None and not self._messages and self._current_request is None:
            log.info("http_header_timeout", remote=_peer(self), timeout_seconds=self._limits.header_timeout)
            self.transport.write(_HEADER_TIMEOUT)
            self.force_close()

    def _body_timed_out(self) -> None:
        body, self._body_timer, self._body = self._body, None, None
        if body is not None and not body.is_eof() and self.transport is not None:
            log.info("http_body_timeout", remote=_peer(self), timeout_seconds=self._limits.body_timeout)
            self.force_close()  # the handler's read ends with ConnectionResetError


def _peer(handler: web_protocol.RequestHandler) -> str | None:
    peer = handler.peername
    return str(peer[0]) if isinstance(peer, tuple) else None


class _GuardedServer(web_server.Server):
    limits: HttpLimits
    _refused_logged_at: float = -1e9
    _refused_since_log: int = 0

    def __call__(self) -> web_protocol.RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)

    def note_refused(self) -> None:
        """Log refusals at most once a minute, with how many there were."""
        self._refused_since_log += 1
        now = self._loop.time()
        if now - self._refused_logged_at >= 60:
            log.warning(
                "http_connection_limit_reached",
                max_connections=self.limits.max_connections,
                refused=self._refused_since_log,
            )
            self._refused_logged_at, self._refused_since_log = now, 0


class GuardedAppRunner(web.AppRunner):
    """web.AppRunner whose connections are bounded by ``limits``."""

    def __init__(self, app: web.Application, limits: HttpLimits | None = None, **kwargs: Any) -> None:
        self.limits = limits or HttpLimits()
        kwargs.setdefault("keepalive_timeout", self.limits.keepalive_timeout)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web_server.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # same object, our protocol factory
        assert isinstance(server, _GuardedServer)
        server.limits = self.limits
        return server
