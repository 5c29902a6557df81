"""aiohttp app factory: routes, request-id/latency middleware, typed app keys."""

from __future__ import annotations

import os
import time

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client.aiohttp import make_aiohttp_handler

from receiver.config.credentials import RejectionLog
from receiver.http import handlers, health
from receiver.http.runtime import REJECTIONS, RUNTIME, Runtime

__all__ = ["REJECTIONS", "RUNTIME", "Runtime", "make_app", "request_context"]

log = structlog.get_logger(__name__)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id to every log line of the request and time it by route."""
    request_id = request.headers.get("X-Request-Id") or os.urandom(8).hex()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    resource = request.match_info.route.resource
    key = (resource.canonical if resource else "unmatched", request.method)
    metrics = request.app[RUNTIME].metrics
    timer = metrics.timers.get(key) or metrics.timers.setdefault(key, metrics.request_latency.labels(*key))
    start = time.perf_counter()
    try:
        response = await handler(request)
    except ConnectionResetError:
        transport = request.transport
        if transport is not None and not transport.is_closing():
            raise  # not our client's connection (e.g. an outgoing call): a 500 Alertmanager retries
        # the client went away, or its body did not arrive in time (web/server.py closed it)
        log.info("http_request_abandoned", path=request.path)
        response = web.json_response({"status": "error", "error": "request not received in time"}, status=408)
    finally:
        timer.observe(time.perf_counter() - start)
        structlog.contextvars.clear_contextvars()
    response.headers["X-Request-Id"] = request_id
    return response


async def drop_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """No ``Server: Python/3.x aiohttp/x.y`` banner: versions help only an attacker."""
    response.headers.popall(hdrs.SERVER, None)


def make_app(runtime: Runtime) -> web.Application:
    """The receiver's routes; /metrics serves ``runtime.metrics`` (the process's registry)."""
    # The body limit is enforced by handlers.read_limited (it follows config reloads);
    # aiohttp's own limit is only a backstop.
    app = web.Application(middlewares=[request_context], client_max_size=64 * 1024 * 1024)
    app[RUNTIME] = runtime
    app[REJECTIONS] = RejectionLog()
    app.on_response_prepare.append(drop_server_header)
    app.router.add_post("/webhook", handlers.webhook)
    app.router.add_post("/-/reload", handlers.reload)
    app.router.add_get("/rollbacks", handlers.rollbacks)
    app.router.add_get("/targets", handlers.targets)
    app.router.add_get("/health/live", health.live)
    app.router.add_get("/health/ready", health.ready)
    app.router.add_get("/health", health.full)
    app.router.add_get("/metrics", make_aiohttp_handler(runtime.metrics.registry))
    return app
