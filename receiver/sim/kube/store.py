"""The object store: a cluster-wide resourceVersion counter, a retained change window
for watches, and synchronous change notification (so nothing has to poll)."""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped


@dataclass(frozen=True)
class Change:
    """One committed write, as a watch event before filtering."""

    type: str  # ADDED | MODIFIED | DELETED
    storage: str
    rv: int
    obj: Obj
    old: Obj | None


class Store:
    def __init__(self, window: int = 5000, start_rv: int = 1000) -> None:
        self._objects: dict[str, dict[Key, Obj]] = {}
        self.rv = start_rv
        self.history: deque[Change] = deque()
        self.window = window
        self.compacted_rv = start_rv  # watches from an RV below this get 410
        self._subscribers: list[Callable[[Change], None]] = []
        self._waiters: list[asyncio.Future[None]] = []

    # reads --------------------------------------------------------------
    def get(self, storage: str, namespace: str, name: str) -> Obj | None:
        return self._objects.get(storage, {}).get((namespace, name))

    def items(self, storage: str, namespace: str | None = None) -> Iterator[Obj]:
        objs = self._objects.get(storage, {})
        for key in sorted(objs):
            if namespace is None or key[0] == namespace:
                yield objs[key]

    # writes -------------------------------------------------------------
    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def commit(self, storage: str, obj: Obj, *, deleted: bool = False) -> Change:
        """Store (or remove) obj; obj must already carry its new resourceVersion."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        bucket = self._objects.setdefault(storage, {})
        old = bucket.get(key)
        rv = int(meta["resourceVersion"])
        if deleted:
            bucket.pop(key, None)
            kind = "DELETED"
        else:
            bucket[key] = obj
            kind = "MODIFIED" if old is not None else "ADDED"
        change = Change(kind, storage, rv, obj, old)
        self.history.append(change)
        while len(self.history) > self.window:
            dropped = self.history.popleft()
            self.compacted_rv = dropped.rv
        for sub in list(self._subscribers):
            sub(change)
        self.notify()
        return change

    def notify(self) -> None:
        """Wake everything waiting in changed(): also used for non-store state that
        tests wait on (open watches, recorded requests)."""
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def compact(self) -> None:
        """Forget the change history, as etcd compaction does: older RVs now get 410."""
        self.history.clear()
        self.compacted_rv = self.rv

    def since(self, rv: int) -> list[Change]:
        return [c for c in self.history if c.rv > rv]

    # notification -------------------------------------------------------
    def subscribe(self, fn: Callable[[Change], None]) -> Callable[[], None]:
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def changed(self) -> asyncio.Future[None]:
        """A future resolved at the next commit."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut


def clone(obj: Obj) -> Obj:
    return copy.deepcopy(obj)
