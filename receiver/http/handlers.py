"""POST /webhook, POST /-/reload, GET /rollbacks, GET /targets; POST /mutes, DELETE /mutes/{target},
POST /breaker/close.

HTTP codes follow Alertmanager's retry rule: 2xx delivered, 5xx retried, 4xx never
retried. So a payload that will never be valid gets 4xx naming the problem, and 503 is
kept for the cases a retry helps: the rollback's intent could not be recorded, a quiet
answer could not be confirmed against the API, or a target names a missing Deployment
(the alert comes back and rolls back once the configuration is fixed).
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from receiver.actions import Actions, Actor, Done, parse_duration, parse_time
from receiver.config.credentials import ACTIONS_PERMISSION, AdminAccess
from receiver.domain.alerts import PayloadError, parse_payload
from receiver.http.runtime import REJECTIONS, RUNTIME
from receiver.intake.deliveries import IntentNotRecorded, Misconfigured, NotConfirmed
from receiver.kube import KubeError
from receiver.status.views import ClusterObjects, build_history, build_status, parse_since, unknown_target

log = structlog.get_logger(__name__)
ALL = "_all"  # DELETE /mutes/_all: the mute of every target
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



# -- person actions: mutes and the breaker (receiver.actions; admin auth) -----------------

MUTE_FIELDS = frozenset({"target", "for", "until", "reason", "by"})
MAX_ACTION_BODY = 16 * 1024
Act = Callable[[Actions], Awaitable[Done]]


async def _json_object(request: web.Request, fields: frozenset[str]) -> dict[str, Any]:
    """The body as a JSON object of known fields; ValueError naming what is wrong."""
    try:
        body = await read_limited(request, MAX_ACTION_BODY)
    except BodyTooLarge:
        raise ValueError(f"body larger than {MAX_ACTION_BODY} bytes") from None
    try:
        doc = json.loads(body or b"{}")
    except ValueError as e:
        raise ValueError(f"body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError("body must be a JSON object")
    unknown = sorted(set(doc) - fields)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(fields))}")
    return doc


def _text(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name!r} must be a non-empty string")
    return value


def _done(done: Done) -> web.Response:
    body: dict[str, Any] = {"status": "ok", "changed": done.changed, "message": done.message}
    if done.mute is not None:
        m = done.mute
        body["mute"] = {"target": None if m.is_global else m.target, "by": m.by, "reason": m.reason,
                        "until": m.until.isoformat(), "source": m.source}
    if done.breaker is not None:
        body["breaker"] = {"state": done.breaker.state, "targets": list(done.breaker.targets),
                           "closed_by": done.breaker.closed_by}
    if done.warnings:
        body["warnings"] = list(done.warnings)
    return web.json_response(body)


def _actor(request: web.Request, given: Mapping[str, Any]) -> Actor:
    """Who acts: a JWT's subject when the token has one (the request cannot name anyone
    else), else ``by`` as given with a static admin token (required then)."""
    sub = request.app[RUNTIME].store.credentials.subject(request.headers.get("Authorization"))
    return Actor(sub if sub is not None else _text(given, "by"), "http")


async def _act(request: web.Request, act: Act) -> web.Response:
    """Admin auth with the actions permission (a static admin token, or a JWT granting
    admin:actions), then the action: 400 for bad input (nothing written), 503 when the
    cluster could not be written (retry)."""
    access = request.app[RUNTIME].store.credentials.admin_access(request.headers.get("Authorization"),
                                                                  ACTIONS_PERMISSION)
    if access is AdminAccess.UNAUTHENTICATED:
        return error(401, f"admin credential required (admin token or JWT with {ACTIONS_PERMISSION})")
    if access is AdminAccess.FORBIDDEN:
        return error(403, f"this credential does not grant {ACTIONS_PERMISSION}")
    actions = request.app[RUNTIME].actions
    if actions is None:
        return error(503, "person actions are not available in this receiver")
    try:
        done = await act(actions)
    except ValueError as e:
        return error(400, str(e), written="nothing")
    except KubeError as e:
        log.error("action_not_written", path=request.path, error=str(e))
        return error(503, f"could not write to the cluster, retry: {e}")
    return _done(done)


async def post_mute(request: web.Request) -> web.Response:
    """POST /mutes {"target": NAME|null, "for": "2h" | "until": TIME, "reason": TEXT, "by": NAME}."""

    async def act(actions: Actions) -> Done:
        doc = await _json_object(request, MUTE_FIELDS)
        if "target" not in doc:
            raise ValueError("'target' must be given: a target's name, or null for every target")
        target = None if doc["target"] is None else _text(doc, "target")
        if ("for" in doc) == ("until" in doc):
            raise ValueError("give exactly one of 'for' (a duration, e.g. \"2h\") and 'until' (an RFC 3339 time)")
        until = parse_duration(_text(doc, "for")) if "for" in doc else parse_time(_text(doc, "until"))
        actor = _actor(request, doc)
        return await actions.mute(target, until=until, reason=_text(doc, "reason"), actor=actor)

    return await _act(request, act)


async def delete_mute(request: web.Request) -> web.Response:
    """DELETE /mutes/{target} (``_all``: the every-target mute) ?by=NAME."""

    async def act(actions: Actions) -> Done:
        name = request.match_info["target"]
        actor = _actor(request, request.query)
        return await actions.unmute(None if name == ALL else name, actor=actor)

    return await _act(request, act)


async def close_breaker(request: web.Request) -> web.Response:
    """POST /breaker/close {"by": NAME}."""

    async def act(actions: Actions) -> Done:
        doc = await _json_object(request, frozenset({"by"}))
        return await actions.close_breaker(actor=_actor(request, doc))

    return await _act(request, act)
