"""Watch streams: chunked JSON, one event per line, as the apiserver's watch handler.

ADDED for the current state when resourceVersion is 0/unset, else the retained changes
after it (410 Expired as an ERROR event when it is older than the window); selectors
applied to old and new object so objects moving out of a selector arrive as DELETED;
BOOKMARKs when allowed; timeoutSeconds ends the stream cleanly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import errors
from .faults import CutRule
from .store import Change, Obj, Store

Present = Callable[[Obj], Obj]


@dataclass
class WatchRequest:
    storage: str
    kind: str
    api_version: str
    namespace: str | None
    match: Callable[[Obj], bool]
    resource_version: str | None
    timeout: float
    bookmarks: bool
    send_initial_events: bool
    present: Present
    expire: bool
    cut: CutRule | None
    bookmark_interval: float
    to_table: Callable[[Obj, bool], Obj] | None = None
    labels: list[tuple[str, str]] = field(default_factory=list)  # label=value pairs match requires
    hold: Callable[[], Any] | None = None  # awaited before each live event (Faults.hold_watches)


class WatchHub:
    """Tracks open watches so the simulator can end them all on stop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queues: set[asyncio.Queue[Change | None]] = set()

    def close_all(self) -> None:
        for q in list(self._queues):
            q.put_nowait(None)

    @property
    def open_count(self) -> int:
        return len(self._queues)

    async def serve(self, request: web.Request, w: WatchRequest) -> web.StreamResponse:
        queue: asyncio.Queue[Change | None] = asyncio.Queue()

        def on_change(c: Change) -> None:
            queue.put_nowait(c)

        # Snapshot and subscribe in one step (no await between): no event is missed.
        backlog: list[tuple[str, Obj]] = []
        error: errors.ApiError | None = None
        rv = w.resource_version
        if w.expire and rv not in (None, "", "0"):
            error = errors.expired(int(rv or 0), self.store.compacted_rv + 1)
        elif rv in (None, "", "0") or w.send_initial_events:
            for obj in self.store.items(w.storage, w.namespace, w.labels):
                if w.match(obj):
                    backlog.append(("ADDED", obj))
            if w.send_initial_events and w.bookmarks:
                backlog.append(("BOOKMARK-END", {}))
        else:
            try:
                since = int(rv)  # type: ignore[arg-type]
            except ValueError:
                raise errors.bad_request(f"invalid resource version: {rv}") from None
            if since < self.store.compacted_rv:
                error = errors.expired(since, self.store.compacted_rv + 1)
            else:
                for c in self.store.since(since):
                    if c.storage == w.storage:
                        ev = self._filter(c, w)
                        if ev:
                            backlog.append(ev)
        unsubscribe = self.store.subscribe(on_change, w.storage)
        self._queues.add(queue)
        self.store.notify()
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        sent = 0
        first_table = True
        last_rv = self.store.rv
        try:
            await resp.prepare(request)

            async def send(type_: str, obj: Obj) -> None:
                nonlocal sent, first_table
                if w.to_table is not None and type_ in ("ADDED", "MODIFIED", "DELETED"):
                    obj = w.to_table(obj, first_table)
                    first_table = False
                elif type_ != "ERROR":
                    obj = w.present(obj)
                line = json.dumps({"type": type_, "object": obj}, separators=(",", ":")) + "\n"
                await resp.write(line.encode())
                sent += 1

            if error is not None:
                await send("ERROR", error.status())
                return resp
            deadline = time.monotonic() + w.timeout
            cut_at = time.monotonic() + w.cut.after_seconds if w.cut and w.cut.after_seconds is not None else None
            next_bookmark = time.monotonic() + w.bookmark_interval
            for type_, obj in backlog:
                if type_ == "BOOKMARK-END":
                    await send("BOOKMARK", self._bookmark(w, str(self.store.rv), initial_end=True))
                    continue
                await send(type_, obj)
                if self._cut_now(w, sent):
                    return self._abort(request, resp)
            while True:
                now = time.monotonic()
                wake = min(x for x in (deadline, cut_at, next_bookmark if w.bookmarks else None) if x is not None)
                try:
                    change = await asyncio.wait_for(queue.get(), timeout=max(wake - now, 0))
                except TimeoutError:
                    now = time.monotonic()
                    if cut_at is not None and now >= cut_at:
                        return self._abort(request, resp)
                    if now >= deadline:
                        if w.bookmarks:
                            await send("BOOKMARK", self._bookmark(w, str(max(last_rv, self.store.rv))))
                        break
                    if w.bookmarks and now >= next_bookmark:
                        await send("BOOKMARK", self._bookmark(w, str(self.store.rv)))
                        next_bookmark = now + w.bookmark_interval
                    continue
                if change is None:
                    break
                last_rv = change.rv
                ev = self._filter(change, w)
                if ev:
                    if w.hold is not None:
                        await w.hold()
                    await send(*ev)
                    if self._cut_now(w, sent):
                        return self._abort(request, resp)
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            unsubscribe()
            self._queues.discard(queue)
            self.store.notify()
        return resp

    @staticmethod
    def _cut_now(w: WatchRequest, sent: int) -> bool:
        return w.cut is not None and w.cut.after_events is not None and sent >= w.cut.after_events

    @staticmethod
    def _abort(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.close()
        return resp

    @staticmethod
    def _bookmark(w: WatchRequest, rv: str, initial_end: bool = False) -> Obj:
        meta: dict[str, Any] = {"resourceVersion": rv, "creationTimestamp": None}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": w.kind, "apiVersion": w.api_version, "metadata": meta}

    @staticmethod
    def _filter(c: Change, w: WatchRequest) -> tuple[str, Obj] | None:
        def in_scope(o: Obj | None) -> bool:
            if o is None:
                return False
            if w.namespace is not None and o["metadata"].get("namespace", "") != w.namespace:
                return False
            return w.match(o)

        new_ok = in_scope(c.obj)
        if c.type == "DELETED":
            return ("DELETED", c.obj) if new_ok else None
        old_ok = in_scope(c.old)
        if c.type == "ADDED":
            return ("ADDED", c.obj) if new_ok else None
        if new_ok and old_ok:
            return ("MODIFIED", c.obj)
        if new_ok:
            return ("ADDED", c.obj)
        if old_ok:
            return ("DELETED", c.obj)
        return None
