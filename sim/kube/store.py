"""The object store: a cluster-wide resourceVersion counter, a retained change window
for watches, and synchronous change notification (so nothing has to poll).

Reads are indexed so that the simulator's own cost stays linear in what a lookup
returns, not in how many objects the cluster holds: names are kept sorted per
namespace (lists come out ordered by namespace/name as the API server's etcd keys
do, without re-sorting on every read), objects are indexed by their controlling
owner (what the controllers look up) and by label (what list and watch selectors
ask for), and subscribers can ask for one storage only.
"""

from __future__ import annotations

import asyncio
import bisect
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped
OwnerKey = tuple[str, str, str]  # (namespace, owner kind, owner name)
Label = tuple[str, str]  # (label key, value)
T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """One committed write, as a watch event before filtering."""

    type: str  # ADDED | MODIFIED | DELETED
    storage: str
    rv: int
    obj: Obj
    old: Obj | None


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    """The ownerReference with controller: true, as metav1.GetControllerOf finds it."""
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def _owner_key(obj: Obj, ns: str) -> OwnerKey | None:
    ref = controller_ref(obj)
    if ref is None:
        return None
    return (ns, str(ref.get("kind", "")), str(ref.get("name", "")))


def _labels(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("labels") or {}  # type: ignore[no-any-return]


class _Bucket:
    """One storage's objects and the indexes over them."""

    def __init__(self) -> None:
        self.objects: dict[Key, Obj] = {}
        self.names: dict[str, list[str]] = {}  # namespace -> sorted names
        self.namespaces: list[str] = []  # sorted, those with at least one object
        self.owned: dict[OwnerKey, dict[str, Obj]] = {}
        self.labelled: dict[Label, set[Key]] = {}

    def put(self, key: Key, obj: Obj, old: Obj | None) -> None:
        ns, name = key
        if old is None:
            names = self.names.get(ns)
            if names is None:
                names = self.names[ns] = []
                bisect.insort(self.namespaces, ns)
            bisect.insort(names, name)
        else:
            self._unindex(key, old)
        self.objects[key] = obj
        owner = _owner_key(obj, ns)
        if owner is not None:
            self.owned.setdefault(owner, {})[name] = obj
        for label in _labels(obj).items():
            self.labelled.setdefault(label, set()).add(key)

    def drop(self, key: Key) -> None:
        old = self.objects.pop(key, None)
        if old is None:
            return
        self._unindex(key, old)
        ns, name = key
        names = self.names[ns]
        del names[bisect.bisect_left(names, name)]
        if not names:
            del self.names[ns]
            del self.namespaces[bisect.bisect_left(self.namespaces, ns)]

    def _unindex(self, key: Key, old: Obj) -> None:
        owner = _owner_key(old, key[0])
        if owner is not None:
            by_owner = self.owned.get(owner)
            if by_owner is not None:
                by_owner.pop(key[1], None)
                if not by_owner:
                    del self.owned[owner]
        for label in _labels(old).items():
            keys = self.labelled.get(label)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.labelled[label]


class Store:
    def __init__(self, window: int = 5000, start_rv: int = 1000) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self.rv = start_rv
        self.history: deque[Change] = deque()
        self.window = window
        self.compacted_rv = start_rv  # watches from an RV below this get 410
        # (storage or None for all, fn), in subscription order; per-storage call lists
        # are derived from it, so a commit only calls those that asked for its storage.
        self._subscribers: list[tuple[str | None, Callable[[Change], None]]] = []
        self._fanout: dict[str, list[Callable[[Change], None]]] = {}
        self._waiters: list[asyncio.Future[None]] = []

    def _bucket(self, storage: str) -> _Bucket:
        bucket = self._buckets.get(storage)
        if bucket is None:
            bucket = self._buckets[storage] = _Bucket()
        return bucket

    # reads --------------------------------------------------------------
    def get(self, storage: str, namespace: str, name: str) -> Obj | None:
        bucket = self._buckets.get(storage)
        return bucket.objects.get((namespace, name)) if bucket is not None else None

    def items(self, storage: str, namespace: str | None = None, labels: Iterable[Label] = ()) -> Iterator[Obj]:
        """Objects ordered by (namespace, name), as a list from the API server; with
        labels, only those carrying every label=value pair (from the label index)."""
        bucket = self._buckets.get(storage)
        if bucket is None:
            return iter(())
        if labels:
            return iter(self._labelled(bucket, namespace, labels))
        namespaces = bucket.namespaces if namespace is None else [namespace]
        keys = [(ns, name) for ns in namespaces for name in bucket.names.get(ns, ())]
        objects = bucket.objects
        return iter([objects[k] for k in keys])

    def count(self, storage: str) -> int:
        bucket = self._buckets.get(storage)
        return len(bucket.objects) if bucket is not None else 0

    def owned_by(self, storage: str, namespace: str, kind: str, name: str) -> list[Obj]:
        """Objects in namespace whose controlling ownerReference names kind/name, by name."""
        bucket = self._buckets.get(storage)
        if bucket is None:
            return []
        found = bucket.owned.get((namespace, kind, name))
        if not found:
            return []
        return [found[n] for n in sorted(found)]

    @staticmethod
    def _labelled(bucket: _Bucket, namespace: str | None, labels: Iterable[Label]) -> list[Obj]:
        sets: list[set[Key]] = []
        for label in labels:
            keys = bucket.labelled.get(label)
            if not keys:
                return []
            sets.append(keys)
        sets.sort(key=len)
        found = (k for k in sets[0] if all(k in s for s in sets[1:]))
        if namespace is not None:
            found = (k for k in found if k[0] == namespace)
        return [bucket.objects[k] for k in sorted(found)]

    # writes -------------------------------------------------------------
    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def commit(self, storage: str, obj: Obj, *, deleted: bool = False) -> Change:
        """Store (or remove) obj; obj must already carry its new resourceVersion."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        bucket = self._bucket(storage)
        old = bucket.objects.get(key)
        rv = int(meta["resourceVersion"])
        if deleted:
            bucket.drop(key)
            kind = "DELETED"
        else:
            bucket.put(key, obj, old)
            kind = "MODIFIED" if old is not None else "ADDED"
        change = Change(kind, storage, rv, obj, old)
        self.history.append(change)
        while len(self.history) > self.window:
            dropped = self.history.popleft()
            self.compacted_rv = dropped.rv
        subs = self._fanout.get(storage)
        if subs is None:
            subs = self._fanout[storage] = [fn for s, fn in self._subscribers if s is None or s == storage]
        for sub in subs:  # a list replaced, never changed, by (un)subscribe: safe to iterate
            sub(change)
        self.notify()
        return change

    def notify(self) -> None:
        """Wake everything waiting in changed(): also used for non-store state that
        tests wait on (open watches, recorded requests)."""
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def compact(self) -> None:
        """Forget the change history, as etcd compaction does: older RVs now get 410."""
        self.history.clear()
        self.compacted_rv = self.rv

    def since(self, rv: int) -> list[Change]:
        out: list[Change] = []
        for c in reversed(self.history):  # newest first: stop at the first one seen
            if c.rv <= rv:
                break
            out.append(c)
        out.reverse()
        return out

    # notification -------------------------------------------------------
    def subscribe(self, fn: Callable[[Change], None], storage: str | None = None) -> Callable[[], None]:
        """Call fn synchronously on every commit (to `storage` only, when given), in
        subscription order; one may unsubscribe (itself or another) while being called."""
        entry = (storage, fn)
        self._subscribers = [*self._subscribers, entry]
        self._fanout = {}

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers = [e for e in self._subscribers if e is not entry]
                self._fanout = {}

        return unsubscribe

    def changed(self) -> asyncio.Future[None]:
        """A future resolved at the next commit."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut


def clone(obj: T) -> T:
    """A deep copy of JSON-like data (what copy.deepcopy gives, sharing included), through
    pickle: several times faster, and the simulator copies every object it writes."""
    return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))  # type: ignore[no-any-return]


def renew(obj: Obj, *parts: str) -> Obj:
    """A new version of a stored object for a writer that changes only metadata's own keys
    and those of the named top-level parts: those dicts are copied, everything else is
    shared with the stored version, which no one changes in place (the store replaces
    objects). Far less to copy, and to keep alive in the watch window, than a clone."""
    new = dict(obj)
    for part in ("metadata", *parts):
        if isinstance(obj.get(part), dict):
            new[part] = dict(obj[part])
    return new
