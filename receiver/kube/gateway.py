"""The kubernetes-asyncio gateway: typed helpers returning plain API dicts.

Responses are read raw (``_preload_content=False``) and parsed as JSON, so callers see
the API's own camelCase objects (what receiver.domain.rollout reads) and 200 concurrent
rollbacks do not pay for model deserialisation. Every call goes through ``call``,
which retries transient failures and turns the rest into KubeError.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import structlog
from kubernetes_asyncio.client import (
    ApiClient,
    AppsV1Api,
    CoordinationV1Api,
    CoreV1Api,
    EventsV1Api,
)

from receiver.kube.errors import KubeError, error_from_response, error_from_status_object
from receiver.kube.retry import RetryPolicy
from receiver.metrics import Metrics

log = structlog.get_logger(__name__)

Obj = dict[str, Any]
Kind = Literal["deployments", "pods", "leases", "configmaps"]
MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "rollback-receiver"

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    ConnectionError,
    OSError,
)


def micro_time(when: datetime | None = None) -> str:
    """A MicroTime as the API writes it: 2006-01-02T15:04:05.000000Z."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> datetime | None:
    """Parse an API Time or MicroTime; None when absent or malformed."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _connection_error(e: BaseException, what: str) -> KubeError:
    """A transport failure as a transient KubeError (status 0), timeouts named as such."""
    if isinstance(e, TimeoutError):
        return KubeError(0, "Timeout", f"no answer in time ({type(e).__name__})", what=what)
    return KubeError(0, "ConnectionError", str(e) or type(e).__name__, what=what)


def _retry_reason(err: KubeError) -> str:
    if err.status == 0:
        return "connection"
    if err.status == 409:
        return "conflict"
    if err.status == 429:
        return "throttled"
    return "server_error"


class Kube:
    """One cluster, seen through the few calls the receiver makes."""

    def __init__(
        self,
        api: ApiClient,
        retry: RetryPolicy | None = None,
        field_manager: str = FIELD_MANAGER,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics.create()  # a private set unless the process's is given
        self.api = api
        self.retry = retry or RetryPolicy()
        self.field_manager = field_manager
        self.apps = AppsV1Api(api)
        self.core = CoreV1Api(api)
        self.coordination = CoordinationV1Api(api)
        self.events = EventsV1Api(api)

    # -- plumbing ---------------------------------------------------------------

    async def once(self, what: str, fn: Callable[..., Awaitable[Any]], *args: Any,
                   **kwargs: Any) -> Obj:
        """One attempt: the parsed body, or KubeError (status 0 = connection failure)."""
        timeout = aiohttp.ClientTimeout(total=self.retry.request_timeout_seconds,
                                        sock_connect=self.retry.connect_timeout_seconds)
        try:
            resp = await fn(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
            try:
                body = await resp.read()
                status = resp.status
                headers = dict(resp.headers)
            finally:
                resp.release()
        except KubeError:
            raise
        except CONNECTION_ERRORS as e:
            raise _connection_error(e, what) from e
        if 200 <= status < 300:
            try:
                parsed = json.loads(body) if body else {}
            except ValueError as e:  # a proxy's HTML page, a body cut short: try again
                raise KubeError(0, "InvalidResponse", f"undecodable {status} answer: {e}",
                                what=what) from e
            return parsed if isinstance(parsed, dict) else {"items": parsed}
        raise error_from_response(status, body, headers, what)

    async def call(
        self,
        what: str,
        fn: Callable[..., Awaitable[Any]],
        *args: Any,
        retry_conflict: bool = True,
        **kwargs: Any,
    ) -> Obj:
        """Call with retries on transient failures (409 only when ``retry_conflict``)."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return await self.once(what, fn, *args, **kwargs)
            except KubeError as err:
                if not err.transient or (err.conflict and not retry_conflict):
                    raise
                delay = self.retry.delay(attempt, err.retry_after)
                if time.monotonic() - started + delay > self.retry.give_up_after_seconds:
                    raise
                reason = _retry_reason(err)
                self.metrics.kube_retries.labels(reason).inc()
                if self.retry.on_retry is not None:  # the CLI prints each retry as it happens
                    self.retry.on_retry(what, err, self.retry.give_up_after_seconds
                                        - (time.monotonic() - started))
                log.info("kube_retry", what=what, status=err.status, reason=reason,
                         attempt=attempt + 1, delay=round(delay, 3), error=err.message)
                attempt += 1
                await asyncio.sleep(delay)

    # -- deployments --------------------------------------------------------------

    async def read_deployment(self, namespace: str, name: str) -> Obj:
        return await self.call(f"get deployments {namespace}/{name}",
                               self.apps.read_namespaced_deployment, name, namespace)

    async def list_deployments(self, namespace: str, **selectors: Any) -> Obj:
        return await self.call(f"list deployments in {namespace}",
                               self.apps.list_namespaced_deployment, namespace, **selectors)

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> Obj:
        """PATCH .../deployments/NAME/scale with merge-patch, as `kubectl scale` does."""
        return await self.call(
            f"patch deployments/scale {namespace}/{name}",
            self.apps.patch_namespaced_deployment_scale,
            name, namespace, {"spec": {"replicas": replicas}},
            _content_type=MERGE_PATCH, field_manager=self.field_manager,
        )

    async def annotate_deployment(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> Obj:
        """Merge-patch metadata.annotations (None removes a key)."""
        return await self.call(
            f"patch deployments {namespace}/{name}",
            self.apps.patch_namespaced_deployment,
            name, namespace, {"metadata": {"annotations": annotations}},
            _content_type=MERGE_PATCH, field_manager=self.field_manager,
        )

    # -- pods -------------------------------------------------------------------------

    async def list_pods(self, namespace: str, label_selector: str | None = None) -> Obj:
        kwargs: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        return await self.call(f"list pods in {namespace}",
                               self.core.list_namespaced_pod, namespace, **kwargs)

    # -- leases -------------------------------------------------------------------------

    async def read_lease(self, namespace: str, name: str) -> Obj:
        return await self.call(f"get leases {namespace}/{name}",
                               self.coordination.read_namespaced_lease, name, namespace)

    async def list_leases(self, namespace: str, label_selector: str | None = None) -> Obj:
        kwargs: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        return await self.call(f"list leases in {namespace}",
                               self.coordination.list_namespaced_lease, namespace, **kwargs)

    async def create_lease(self, namespace: str, body: Obj) -> Obj:
        """POST a Lease; 409 AlreadyExists is not retried (someone else was first)."""
        return await self.call(f"create leases {namespace}",
                               self.coordination.create_namespaced_lease, namespace, body,
                               retry_conflict=False)

    async def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj:
        """PUT a Lease carrying the resourceVersion it was read at; 409 = lost the race."""
        return await self.call(f"update leases {namespace}/{name}",
                               self.coordination.replace_namespaced_lease, name, namespace,
                               body, retry_conflict=False)

    # -- events ---------------------------------------------------------------------------

    async def create_event(self, namespace: str, body: Obj) -> Obj:
        """POST an events.k8s.io/v1 Event (shown by kubectl get events / describe).

        A create's 409 is not retried: AlreadyExists means an earlier attempt (whose answer
        was lost) or an earlier run already posted it, which is success; any other
        conflict would only repeat."""
        try:
            return await self.call(f"create events {namespace}",
                                   self.events.create_namespaced_event, namespace, body,
                                   retry_conflict=False)
        except KubeError as err:
            if err.conflict and err.reason == "AlreadyExists":
                return body
            raise

    # -- watch ------------------------------------------------------------------------------

    def _list_fn(self, kind: Kind) -> Callable[..., Awaitable[Any]]:
        return {
            "deployments": self.apps.list_namespaced_deployment,
            "pods": self.core.list_namespaced_pod,
            "leases": self.coordination.list_namespaced_lease,
            "configmaps": self.core.list_namespaced_config_map,
        }[kind]

    async def list(self, kind: Kind, namespace: str, *, retry: bool = True,
                   **selectors: Any) -> Obj:
        """List a collection; ``retry=False`` for callers with their own backoff (Mirror),
        so their failures show at once instead of after give_up_after_seconds."""
        what = f"list {kind} in {namespace}"
        if not retry:
            return await self.once(what, self._list_fn(kind), namespace, **selectors)
        return await self.call(what, self._list_fn(kind), namespace, **selectors)

    async def watch(
        self,
        kind: Kind,
        namespace: str,
        resource_version: str,
        timeout_seconds: int,
        **selectors: Any,
    ) -> AsyncIterator[Obj]:
        """One watch stream from ``resource_version``: yields events until it ends.

        Raises WatchExpired on 410 and KubeError on other failures; resuming is the
        caller's job (see Mirror), because only it knows the last resourceVersion seen.
        """
        what = f"watch {kind} in {namespace}"
        # no total: the stream lives timeout_seconds; silence well past that = a dead server
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.retry.connect_timeout_seconds,
            sock_read=timeout_seconds + self.retry.watch_margin_seconds,
        )
        try:
            resp = await self._list_fn(kind)(
                namespace, watch=True, resource_version=resource_version,
                allow_watch_bookmarks=True, timeout_seconds=timeout_seconds,
                _preload_content=False, _request_timeout=timeout, **selectors,
            )
        except CONNECTION_ERRORS as e:
            raise _connection_error(e, what) from e
        try:
            if not 200 <= resp.status < 300:
                body = await resp.read()
                raise error_from_response(resp.status, body, dict(resp.headers), what)
            while True:
                try:
                    line = await resp.content.readline()
                except CONNECTION_ERRORS as e:
                    raise _connection_error(e, what) from e
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as e:  # the stream ended mid-line (a proxy, a cut)
                    raise KubeError(0, "InvalidResponse", f"undecodable watch event: {e}",
                                    what=what) from e
                if not isinstance(event, dict):
                    raise KubeError(0, "InvalidResponse", "a watch event that is not an object",
                                    what=what)
                if event.get("type") == "ERROR":
                    raise error_from_status_object(event.get("object") or {}, what)
                yield event
        finally:
            resp.release()
