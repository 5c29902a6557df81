"""POST /webhook, POST /-/reload, GET /rollbacks, GET /targets.

HTTP codes follow Alertmanager's retry rule: 2xx delivered, 5xx retried, 4xx never
retried. So a payload that will never be valid gets 4xx naming the problem, and 503 is
kept for the cases a retry helps: the rollback's intent could not be recorded, a quiet
answer could not be confirmed against the API, or a target names a missing Deployment
(the alert comes back and rolls back once the configuration is fixed).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from receiver.config.credentials import AdminAccess
from receiver.domain.alerts import PayloadError, parse_payload
from receiver.http.runtime import REJECTIONS, RUNTIME
from receiver.intake.deliveries import IntentNotRecorded, Misconfigured, NotConfirmed
from receiver.kube import KubeError
from receiver.status.views import ClusterObjects, build_history, build_status, parse_since, unknown_target

log = structlog.get_logger(__name__)
#: Reads the targets' Deployments and Leases for GET /targets (set by serve; absent = 503).
ReadObjects = Callable[[], Awaitable[ClusterObjects]]
CLUSTER_OBJECTS: web.AppKey[ReadObjects] = web.AppKey("cluster_objects")


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"status": "error", "error": message, **extra}, status=status)


class BodyTooLarge(Exception):
    pass


#: Above this, validation allocates enough objects (10,000 alerts: ~10^5) that the cyclic
#: GC's generation-0 passes cost a third of the time; nothing cyclic is created, so pause it.
LARGE_BODY = 256 * 1024


@contextlib.contextmanager
def gc_paused(pause: bool) -> Iterator[None]:
    """Pause the cyclic garbage collector for one synchronous block (no awaits inside)."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def read_limited(request: web.Request, limit: int) -> bytes:
    """Read the body, stopping as soon as it exceeds ``limit`` (never read whole)."""
    if request.content_length is not None:
        if request.content_length > limit:
            raise BodyTooLarge
        return await request.read()  # exactly Content-Length bytes, already bounded
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def webhook(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    store = rt.store
    if not store.credentials.webhook_allowed(request.headers.get("Authorization")):
        rt.metrics.webhooks.labels("unauthorized").inc()
        request.app[REJECTIONS].rejected(request.remote, reason="missing or wrong credentials")
        return error(401, "missing or invalid credentials", hint="send Authorization: Bearer <token> or basic auth")
    limit = store.config.settings.max_body_bytes
    try:
        body = await read_limited(request, limit)
    except BodyTooLarge:
        rt.metrics.webhooks.labels("too_large").inc()
        return error(413, f"payload larger than settings.max_body_bytes ({limit} bytes)")
    answer = await rt.service.repeat(body)
    if answer is not None:
        rt.metrics.webhooks.labels("accepted").inc()
        return web.Response(body=answer, content_type="application/json")
    try:
        with gc_paused(len(body) > LARGE_BODY):
            payload = parse_payload(body)
    except PayloadError as e:
        rt.metrics.webhooks.labels("invalid").inc()
        log.warning("webhook_invalid_payload", error=str(e))
        return error(400, str(e))
    structlog.contextvars.bind_contextvars(group_key=payload.group_key)
    try:
        result = await rt.service.handle(payload, body)
    except IntentNotRecorded as e:
        rt.metrics.webhooks.labels("intent_not_recorded").inc()
        return error(
            503,
            f"could not record the rollback in the cluster, retry: {e}",
            decisions=[d.summary() for d in e.decisions],
        )
    except Misconfigured as e:
        rt.metrics.webhooks.labels("misconfigured").inc()
        return error(503, f"target misconfigured, nothing was changed: {e}",
                     decisions=[d.summary() for d in e.decisions])
    except NotConfirmed as e:
        rt.metrics.webhooks.labels("not_confirmed").inc()
        return error(503, f"could not confirm the targets' state, retry: {e}",
                     decisions=[d.summary() for d in e.decisions])
    rt.metrics.webhooks.labels("accepted").inc()
    return web.Response(body=result.response_body, content_type="application/json")


def admin_denied(request: web.Request) -> web.Response | None:
    creds = request.app[RUNTIME].store.credentials
    access = creds.admin_access(request.headers.get("Authorization"))
    if access is AdminAccess.GRANTED:
        return None
    if access is AdminAccess.FORBIDDEN:
        return error(403, "this credential does not grant admin:monitoring")
    return error(401, "admin credential required (admin token or JWT with admin:monitoring)")


async def reload(request: web.Request) -> web.Response:
    if (denied := admin_denied(request)) is not None:
        return denied
    result = await request.app[RUNTIME].store.reload("http")
    if not result.ok:
        return error(400, result.error or "reload failed", kept="last good config")
    return web.json_response({"status": "ok", "changed": result.changed})


async def rollbacks(request: web.Request) -> web.Response:
    if (denied := admin_denied(request)) is not None:
        return denied
    rt = request.app[RUNTIME]
    config = rt.store.config
    target = request.query.get("target") or None
    if (problem := unknown_target(config, target)) is not None:
        return error(400, problem)
    since = None
    if "since" in request.query:
        try:
            since = parse_since(request.query["since"], datetime.now(UTC))
        except ValueError as e:
            return error(400, str(e))
    view = build_history(await rt.list_rollbacks(), target=target, since=since)
    return web.json_response(view.model_dump(mode="json"))


async def targets(request: web.Request) -> web.Response:
    """Each target's status, read from the cluster like `receiver status -o json`."""
    if (denied := admin_denied(request)) is not None:
        return denied
    config = request.app[RUNTIME].store.config
    target = request.query.get("target") or None
    if (problem := unknown_target(config, target)) is not None:
        return error(400, problem)
    read = request.app.get(CLUSTER_OBJECTS)
    if read is None:
        return error(503, "this receiver has no cluster view")
    try:
        objects = await read()
    except KubeError as e:
        return error(503, f"cannot read the cluster: {e}")
    view = build_status(config, objects, datetime.now(UTC), target)
    return web.json_response(view.model_dump(mode="json"))
