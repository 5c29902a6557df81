"""HTTP front of the simulator: routing, authentication and authorization, fault
injection, request recording, and the REST verbs over the registry."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from aiohttp import web

from . import access_review, convert, discovery, errors, fields, protobuf, selectors, tables
from .auth import allowed
from .patch import APPLY_PATCH, media_type
from .resources import NAMESPACES, SELF_SUBJECT_ACCESS_REVIEWS, Resource, find
from .store import Obj
from .watch import WatchRequest

if TYPE_CHECKING:
    from .auth import AccessRule
    from .faults import Faults
    from .registry import Registry
    from .store import Store
    from .watch import WatchHub


class SimState(Protocol):
    """What the handlers use of the simulator (KubeSim provides it; no import back up)."""

    @property
    def requests(self) -> list[RecordedRequest]: ...

    store: Store
    faults: Faults
    tokens: dict[str, list[AccessRule]] | None
    registry: Registry
    bookmark_interval: float
    watches: WatchHub


@dataclass
class RecordedRequest:
    """One request as the simulator received it (and how it answered)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: bytes | None
    status: int
    user: str | None
    verb: str = ""
    group: str = ""  # API group ("" = core), so a test can check a request against RBAC rules
    resource: str = ""  # "deployments/scale" for a subresource
    namespace: str = ""
    name: str = ""
    # time.monotonic() when the request reached the handler, before its body was read
    # (CLOCK_MONOTONIC: comparable across processes on one host)
    received: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Target:
    res: Resource
    namespace: str
    name: str
    subresource: str


def parse_bool(value: str | None) -> bool:
    """strconv.ParseBool, which the apiserver uses: 1, t, T, TRUE, true, True."""
    return (value or "").strip().lower() in ("1", "t", "true")


def status_response(err: errors.ApiError) -> web.Response:
    return web.json_response(err.status(), status=err.code, headers=err.headers)


def parse_path(path: str) -> Target | str | None:
    """A resource target, "discovery", or None (404)."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api":
        if len(parts) < 2:
            return "discovery"
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) < 3:
            return "discovery"
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return "discovery"
    if not rest:
        return "discovery"
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3 and group == "" and find("", version, rest[2]) is None:
        res = find("", version, "namespaces")
        if res is None:
            return None
        return Target(res, "", rest[1], rest[2] if len(rest) > 2 else "")
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    res = find(group, version, rest[0])
    if res is None:
        return None
    if namespace and not res.namespaced:
        return None
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3 or (sub and res.sub(sub) is None):
        return None
    return Target(res, namespace, name, sub)


def verb_of(method: str, t: Target, query: dict[str, str]) -> str:
    if method == "GET":
        if t.name:
            return "get"
        return "watch" if parse_bool(query.get("watch")) else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if t.name else "deletecollection",
    }.get(method, method.lower())


class Handlers:
    def __init__(self, sim: SimState) -> None:
        self.sim = sim

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    # entry point ---------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        body = await request.read() if request.can_read_body else None
        query = dict(request.query)
        target = parse_path(request.path)
        user: str | None = None
        record = RecordedRequest(
            request.method,
            request.path,
            query,
            request.headers.get("Content-Type"),
            body or None,
            0,
            None,
            received=received,
        )
        if isinstance(target, Target):
            record.verb = verb_of(request.method, target, query)
            record.group = target.res.group
            record.resource = f"{target.res.plural}/{target.subresource}" if target.subresource else target.res.plural
            record.namespace, record.name = target.namespace, target.name
        self.sim.requests.append(record)
        self.sim.store.notify()
        faults = self.sim.faults
        try:
            delay = faults.delay_for(record.verb, record.resource)
            if delay:
                await asyncio.sleep(delay)
            if faults.should_drop(record.verb, record.resource):
                if request.transport is not None:
                    request.transport.close()
                record.status = -1
                return web.Response(status=500)
            user = self._authenticate(request)
            record.user = user
            if target is None:
                raise errors.page_not_found()
            if target == "discovery":
                resp = self._discovery(request)
                record.status = resp.status
                return resp
            assert isinstance(target, Target)
            if target.res is SELF_SUBJECT_ACCESS_REVIEWS:  # any authenticated user may ask
                resp = self._access_review(record.verb, user, body, request.headers.get("Content-Type"))
                record.status = resp.status
                return resp
            self._authorize(user, record.verb, target)
            rule = faults.failure_for(record.verb, record.resource, target.namespace, target.name)
            if rule is not None:
                if rule.body is not None:
                    record.status = rule.status
                    return web.Response(status=rule.status, body=rule.body, content_type="application/json")
                if rule.status == 429 and rule.plain_429:
                    record.status = 429
                    return web.Response(
                        status=429,
                        text="Too many requests, please try again later.\n",
                        headers={"Retry-After": str(rule.retry_after), "X-Content-Type-Options": "nosniff"},
                    )
                raise errors.for_status(rule.status, rule.retry_after)
            if record.verb == "watch":
                record.status = 200
                return await self._watch(request, target, query)
            resp = await self._rest(request, record.verb, target, query, body)
            record.status = resp.status
            if faults.should_drop(record.verb, record.resource, after=True) and request.transport is not None:
                request.transport.close()
            return resp
        except errors.ApiError as e:
            record.status = e.code
            return status_response(e)

    # auth ----------------------------------------------------------------
    def _authenticate(self, request: web.Request) -> str | None:
        tokens = self.sim.tokens
        if tokens is None:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in tokens:
            raise errors.unauthorized()
        return token.strip()

    def _authorize(self, user: str | None, verb: str, t: Target) -> None:
        if self.sim.tokens is None or user is None:
            return
        res = t.res
        # RequestInfo treats a namespace's own name as its namespace attribute.
        ns = t.name if t.res.plural == "namespaces" else t.namespace
        if not allowed(self.sim.tokens[user], verb, res.group, res.plural, t.subresource, ns, t.name):
            raise errors.forbidden(user, verb, res.plural, t.subresource, res.group, ns, t.name)

    def _access_review(self, verb: str, user: str | None, body: bytes | None, ctype: str | None) -> web.Response:
        if verb != "create":
            raise errors.method_not_allowed(verb, SELF_SUBJECT_ACCESS_REVIEWS.plural)
        tokens = self.sim.tokens
        rules = None if tokens is None or user is None else tokens[user]
        return web.json_response(access_review.review(access_review.parse(body, ctype), rules), status=201)

    # discovery -------------------------------------------------------------
    def _discovery(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        doc: dict[str, Any] | None
        if path == "/version":
            doc = discovery.VERSION
        elif path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        elif path == "/api":
            doc = discovery.api_versions(f"{request.host}")
        elif path == "/apis":
            doc = discovery.api_group_list()
        elif path == "/openapi/v3":
            doc = discovery.openapi_v3_root()
        elif path.startswith("/openapi/v3/"):
            gv = path.removeprefix("/openapi/v3/").split("/")
            if gv[0] == "api" and len(gv) == 2:
                doc = discovery.openapi_v3_group_version("", gv[1])
            elif gv[0] == "apis" and len(gv) == 3:
                doc = discovery.openapi_v3_group_version(gv[1], gv[2])
            else:
                doc = None
        else:
            parts = [p for p in path.split("/") if p]
            if parts[:1] == ["api"] and len(parts) == 2:
                doc = discovery.resource_list("", parts[1])
            elif parts[:1] == ["apis"] and len(parts) == 2:
                doc = discovery.api_group(parts[1])
            elif parts[:1] == ["apis"] and len(parts) == 3:
                doc = discovery.resource_list(parts[1], parts[2])
            else:
                doc = None
        if doc is None:
            raise errors.page_not_found()
        return web.json_response(doc, headers={"ETag": discovery.etag(doc)})

    # REST verbs ------------------------------------------------------------
    def _present(self, res: Resource, obj: Obj) -> Obj:
        if res.group == "events.k8s.io":
            out = convert.event_from_core(obj)
            out.setdefault("regarding", {})
            out.setdefault("deprecatedSource", {})
            out.setdefault("deprecatedFirstTimestamp", None)
            out.setdefault("deprecatedLastTimestamp", None)
            return out
        return obj

    def _manager(self, request: web.Request, query: dict[str, str], apply: bool) -> str:
        manager = query.get("fieldManager")
        if apply and not manager:
            raise errors.bad_request("PATCH, fieldManager is required for apply patch")
        return manager or fields.manager_from_user_agent(request.headers.get("User-Agent"))

    @staticmethod
    def _decode(body: bytes | None, content_type: str | None) -> Any:
        if not body:
            raise errors.bad_request("the body of the request was empty")
        try:
            if media_type(content_type) in (APPLY_PATCH, "application/yaml"):
                return yaml.safe_load(body)
            if media_type(content_type) == protobuf.PROTOBUF:
                return protobuf.decode(body)
            return json.loads(body)
        except (ValueError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None

    async def _rest(
        self, request: web.Request, verb: str, t: Target, query: dict[str, str], body: bytes | None
    ) -> web.Response:
        reg = self.sim.registry
        res = t.res
        ns = t.namespace
        ctype = request.headers.get("Content-Type")
        accept = request.headers.get("Accept")
        if verb == "get":
            obj = reg.get(res, ns, t.name)
            if t.subresource == "scale":
                return web.json_response(convert.scale_of(obj))
            if tables.wants_table(accept) and not t.subresource:
                return web.json_response(self._table(res, [obj], query, obj["metadata"]["resourceVersion"]))
            return web.json_response(self._present(res, obj))
        if verb == "list":
            match = selectors.matcher(query.get("labelSelector"), query.get("fieldSelector"), res.store)
            pairs = selectors.equalities(match.labels)
            items = [o for o in reg.list_objects(res, ns if res.namespaced and ns else None, pairs) if match(o)]
            rv = str(self.sim.store.rv)
            items, cont = self._page(items, query, rv)
            if tables.wants_table(accept):
                doc = self._table(res, items, query, rv)
                if cont:
                    doc["metadata"]["continue"] = cont
                return web.json_response(doc)
            meta: dict[str, Any] = {"resourceVersion": rv}
            if cont:
                meta["continue"] = cont
                meta["remainingItemCount"] = 0
            out = []
            for o in items:
                p = dict(self._present(res, o))
                p.pop("kind", None)
                p.pop("apiVersion", None)
                out.append(p)
            return web.json_response(
                {"kind": f"{res.kind}List", "apiVersion": res.group_version, "metadata": meta, "items": out}
            )
        if verb == "create":
            if t.name:
                raise errors.method_not_allowed(verb, res.plural)
            data = self._decode(body, ctype)
            obj = reg.create(res, ns, data, manager=self._manager(request, query, False))
            return web.json_response(self._present(res, obj), status=201)
        if verb == "update":
            data = self._decode(body, ctype)
            obj = reg.update(
                res,
                ns,
                t.name,
                data,
                manager=self._manager(request, query, False),
                subresource=t.subresource,
                copy_body=False,
            )
            return web.json_response(obj if t.subresource == "scale" else self._present(res, obj))
        if verb == "patch":
            data = self._decode(body, ctype)
            apply = media_type(ctype) == APPLY_PATCH
            obj = reg.patch(
                res,
                ns,
                t.name,
                data,
                ctype or "",
                manager=self._manager(request, query, apply),
                subresource=t.subresource,
            )
            return web.json_response(obj if t.subresource == "scale" else self._present(res, obj))
        if verb == "delete":
            options = self._decode(body, ctype) if body else {}
            if "gracePeriodSeconds" in query:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            obj, gone = reg.delete(res, ns, t.name, options)
            if res.plural == "pods" or not gone:
                return web.json_response(self._present(res, obj))
            details: dict[str, Any] = {"name": t.name, "kind": res.plural, "uid": obj["metadata"]["uid"]}
            if res.group:
                details = {"name": t.name, "group": res.group, "kind": res.plural, "uid": obj["metadata"]["uid"]}
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
            )
        if verb == "deletecollection":
            match = selectors.matcher(query.get("labelSelector"), query.get("fieldSelector"), res.store)
            deleted = []
            for o in reg.list_objects(res, ns or None, selectors.equalities(match.labels)):
                if match(o):
                    obj, _ = reg.delete(res, o["metadata"].get("namespace", ""), o["metadata"]["name"])
                    p = dict(self._present(res, obj))
                    deleted.append(p)
            return web.json_response(
                {
                    "kind": f"{res.kind}List",
                    "apiVersion": res.group_version,
                    "metadata": {"resourceVersion": str(self.sim.store.rv)},
                    "items": deleted,
                }
            )
        raise errors.method_not_allowed(verb, res.plural)

    def _table(self, res: Resource, objs: list[Obj], query: dict[str, str], rv: str) -> Obj:
        return tables.table(
            res.plural,
            [self._present(res, o) if res.plural != "events" else o for o in objs],
            rv,
            include_object=query.get("includeObject", "Metadata"),
            api_version=res.group_version,
            kind=res.kind,
        )

    @staticmethod
    def _page(items: list[Obj], query: dict[str, str], rv: str) -> tuple[list[Obj], str]:
        start = 0
        if query.get("continue"):
            try:
                start = int(json.loads(base64.urlsafe_b64decode(query["continue"]))["start"])
            except (ValueError, KeyError):
                raise errors.bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
                ) from None
        limit = int(query.get("limit") or 0)
        if limit <= 0 or start + limit >= len(items):
            return items[start:], ""
        token = base64.urlsafe_b64encode(
            json.dumps({"v": "meta.k8s.io/v1", "rv": int(rv), "start": start + limit}).encode()
        ).decode()
        return items[start : start + limit], token

    async def _watch(self, request: web.Request, t: Target, query: dict[str, str]) -> web.StreamResponse:
        res = t.res
        match = selectors.matcher(query.get("labelSelector"), query.get("fieldSelector"), res.store)
        timeout = float(query.get("timeoutSeconds") or 1800)
        table_fn = None
        if tables.wants_table(request.headers.get("Accept")):

            def table_fn(obj: Obj, headers: bool) -> Obj:
                return tables.table(
                    res.plural,
                    [self._present(res, obj)],
                    obj["metadata"]["resourceVersion"],
                    include_object=query.get("includeObject", "Metadata"),
                    api_version=res.group_version,
                    kind=res.kind,
                    with_headers=headers,
                )

        w = WatchRequest(
            storage=res.store,
            kind=res.kind,
            api_version=res.group_version,
            namespace=t.namespace if res.namespaced and t.namespace else None,
            match=match,
            labels=selectors.equalities(match.labels),
            resource_version=query.get("resourceVersion"),
            timeout=timeout,
            bookmarks=parse_bool(query.get("allowWatchBookmarks")),
            send_initial_events=parse_bool(query.get("sendInitialEvents")),
            present=lambda o: self._present(res, o),
            expire=self.sim.faults.take_expire(),
            cut=self.sim.faults.cut_for(res.plural),
            bookmark_interval=self.sim.bookmark_interval,
            to_table=table_fn,
            hold=lambda: self.sim.faults.wait_released(res.plural),
        )
        return await self.sim.watches.serve(request, w)


__all__ = ["NAMESPACES", "Handlers", "RecordedRequest"]
