"""Mirror: list+watch a collection into memory, resuming like a client-go reflector.

List, then watch from the list's resourceVersion; on a cut or timed-out stream, watch
again from the last resourceVersion seen; on 410 Expired, list again. Subscribers are
called (synchronously, cheaply) after every change, so waiting code wakes on events,
never on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any, TypeVar, cast

import structlog

from receiver.kube.errors import KubeError, WatchExpired
from receiver.kube.gateway import Kind, Kube, Obj

log = structlog.get_logger(__name__)

FAILING_AFTER = 5  # consecutive failed attempts before the mirror reports itself failing

Listener = Callable[[str, Obj | None], None]  # (event type or "SYNC", object)
V = TypeVar("V")


class Mirror:
    """An always-current copy of one namespace's objects of one kind."""

    def __init__(
        self,
        kube: Kube,
        kind: Kind,
        namespace: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch_timeout: tuple[int, int] = (240, 480),
    ) -> None:
        self.kube = kube
        self.kind: Kind = kind
        self.namespace = namespace
        self.selectors: dict[str, Any] = {}
        if label_selector:
            self.selectors["label_selector"] = label_selector
        if field_selector:
            self.selectors["field_selector"] = field_selector
        self.watch_timeout = watch_timeout
        self.items: dict[str, Obj] = {}
        # typed views (receiver.domain.kube_views), built once per object version
        self._views: dict[str, tuple[Callable[[Obj], Any], Any]] = {}
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        self.error: KubeError | None = None  # last non-transient failure, for reporting
        self.failures = 0  # consecutive failed list/watch attempts
        self.last_failure: str | None = None
        self.relists = 0
        self.rewatches = 0
        self._settled = asyncio.Event()  # listed once, or failed for a reason to report
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after each change; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(
                self.run(), name=f"mirror {self.kind}/{self.namespace}"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def ready(self) -> None:
        """Wait for the first list; raise its KubeError if it was refused (e.g. 403)."""
        await self._settled.wait()
        if not self.synced.is_set() and self.error is not None:
            raise self.error

    def problem(self) -> str | None:
        """Why this copy cannot be trusted now (None when it is current), for /health."""
        where = f"{self.kind} watch in {self.namespace}"
        if self._task is not None and self._task.done():
            exc = None if self._task.cancelled() else self._task.exception()
            return f"{where} stopped: {exc!r}"
        if self.error is not None:
            return f"{where}: {self.error}"
        if self.failures >= FAILING_AFTER:
            return f"{where} failing ({self.failures} attempts): {self.last_failure}"
        return None

    def get(self, name: str) -> Obj | None:
        return self.items.get(name)

    def view(self, name: str, build: Callable[[Obj], V]) -> V | None:
        """``build(obj)`` for the object as it is now, built once per version of it."""
        hit = self._views.get(name)
        if hit is not None and hit[0] is build:
            return cast(V, hit[1])
        obj = self.items.get(name)
        if obj is None:
            return None
        made = build(obj)
        self._views[name] = (build, made)
        return made

    def _notify(self, kind: str, obj: Obj | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, obj)
            except Exception:  # a listener's bug must not stop the mirror
                log.exception("mirror_listener_failed", kind=self.kind)

    async def _list(self) -> None:
        body = await self.kube.list(self.kind, self.namespace, retry=False, **self.selectors)
        self.items = {i["metadata"]["name"]: i for i in body.get("items") or []}
        self._views.clear()
        self.resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self.error = None
        self.failures = 0
        self.relists += 1
        self.synced.set()
        self._settled.set()
        self._notify("SYNC", None)

    def _apply(self, event: Obj) -> None:
        obj = event.get("object") or {}
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = str(rv)
        etype = event.get("type", "")
        if etype == "BOOKMARK":
            return
        name = obj["metadata"]["name"]
        self._views.pop(name, None)
        if etype == "DELETED":
            self.items.pop(name, None)
        else:
            self.items[name] = obj
        self._notify(etype, obj)

    async def run(self) -> None:
        """List and watch until cancelled."""
        attempt = 0
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                lo, hi = self.watch_timeout
                async for event in self.kube.watch(
                    self.kind, self.namespace, self.resource_version or "",
                    random.randint(lo, hi), **self.selectors,
                ):
                    self._apply(event)
                    attempt = 0
                    self.failures = 0
                self.rewatches += 1  # stream ended: resume from the last version seen
                self.failures = 0
            except WatchExpired:
                log.info("watch_expired", kind=self.kind, namespace=self.namespace)
                need_list = True
            except KubeError as err:
                if not err.transient:
                    self.error = err
                    self._settled.set()
                    self._notify("ERROR", None)
                    need_list = True
                self.rewatches += 1
                self.failures += 1
                self.last_failure = str(err)
                delay = self.kube.retry.delay(attempt, err.retry_after)
                attempt += 1
                # a lost connection is reported by serve's ClusterLink, rate-limited
                (log.debug if err.status == 0 else log.info)("watch_retry", kind=self.kind, namespace=self.namespace,
                         status=err.status, error=err.message, delay=round(delay, 3))
                await asyncio.sleep(delay)
            except Exception as err:  # anything unforeseen: never die silently, start over
                self.failures += 1
                self.last_failure = f"{type(err).__name__}: {err}"
                need_list = True
                delay = self.kube.retry.delay(attempt)
                attempt += 1
                log.exception("watch_failed", kind=self.kind, namespace=self.namespace,
                              delay=round(delay, 3))
                await asyncio.sleep(delay)
