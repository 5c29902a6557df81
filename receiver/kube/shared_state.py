"""State every receiver replica must share, kept in the cluster: run-time mutes and the
blast-radius breaker, in one ConfigMap ``rollback-receiver-state`` in
``Config.state_namespace`` (settings.state_namespace, else settings.lease_namespace,
else the first target's namespace). Never in one process's memory: a change made
through any replica (or the CLI) is seen by every replica's watch within a second, and
survives restarts. The documents' formats are in receiver.domain.shared_state.

Public API (``SharedStateStore``)::

    store = SharedStateStore(kube, config_provider, clock=...)
    await store.start(); await store.wait_synced(5)     # list+watch (receiver.kube.Mirror)
    store.current() -> SharedState       # in memory, from the watch; never raises
    store.is_current -> bool             # listed, watch alive, document readable
    store.problem() -> str | None        # why it is not current, for /health and status
    store.subscribe(fn) -> unsubscribe   # fn(SharedState) after every change seen
    await store.wait_for(pred, timeout)  # until pred(current()) holds (TimeoutError)
    await store.read() -> SharedState    # one GET, for a CLI with no watch running
    await store.set_mute(target | None, by, reason, until) -> RuntimeMute   # None = "*"
    await store.clear_mute(target | None, by) -> RuntimeMute | None         # None: was not muted
    await store.open_breaker(targets, reason) -> BreakerState
    await store.close_breaker(by) -> BreakerState
    store.expired_since(since, now=None) -> tuple[RuntimeMute, ...]         # to announce
    await store.stop()

Bad input (unknown target, ``until`` not in the future, no zone, empty by/reason)
raises ValueError with a message for a person before anything is written. Writes are
read-modify-write carrying the resourceVersion read (receiver.kube.optimistic.modify):
of two replicas writing at once both changes survive. The ConfigMap is created by the
first write (AlreadyExists -> read again). Each operation rewrites only its own data
key, so a corrupt ``breaker`` document does not block a mute (and vice versa); a
corrupt document is reported (``problem()``, log ``shared_state_unreadable``) and read
as empty, and the next write of that key replaces it (log ``shared_state_repaired``).
Opening an open breaker adds the targets and keeps the first opened_at; closing a
closed one, or clearing an absent mute, writes nothing.
The namespace is fixed when the store is built: a reload that changes it takes effect
at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from receiver.domain import shared_state as dom
from receiver.domain.settings import Config
from receiver.domain.shared_state import BreakerState, RuntimeMute, SharedState
from receiver.kube.errors import KubeError
from receiver.kube.gateway import Kube, Obj
from receiver.kube.lease.codec import LABEL_MANAGED_BY, MANAGED_BY
from receiver.kube.mirror import Mirror
from receiver.kube.optimistic import modify

log = structlog.get_logger(__name__)

STATE_NAME = "rollback-receiver-state"
#: How long a write waits for this replica's own watch to show it, so current() right
#: after set_mute() already has the mute (only when the watch is running).
OWN_WRITE_WAIT_SECONDS = 2.0

T = TypeVar("T")
Change = Callable[[SharedState], tuple[dict[str, str], T]]
Listener = Callable[[SharedState], None]


class SharedStateStore:
    """The shared-state ConfigMap: watched into memory, changed by optimistic writes."""

    def __init__(
        self,
        kube: Kube,
        config_provider: Callable[[], Config],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        namespace: str | None = None,
    ) -> None:
        self.kube = kube
        self.config_provider = config_provider
        self.clock = clock
        self.namespace = namespace or config_provider().state_namespace
        self.name = STATE_NAME
        self._mirror = Mirror(kube, "configmaps", self.namespace, field_selector=f"metadata.name={STATE_NAME}")
        self._mirror.subscribe(self._on_event)
        self._state = dom.EMPTY
        self._state_rv: str | None = None
        self._reported: tuple[str, ...] = ()
        self._listeners: list[Listener] = []
        self._started = False

    # -- the view ------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    async def start(self) -> None:
        self._started = True
        self._mirror.start()

    async def stop(self) -> None:
        self._started = False
        await self._mirror.stop()

    async def wait_synced(self, timeout: float) -> None:  # noqa: ASYNC109 (interface)
        """Wait for the first list (TimeoutError; the list's KubeError when refused, e.g. 403)."""
        async with asyncio.timeout(timeout):
            await self._mirror.ready()

    def current(self) -> SharedState:
        """The state as this replica's watch last saw it (empty before the first list)."""
        obj = self._mirror.get(self.name)
        rv = (obj or {}).get("metadata", {}).get("resourceVersion") if obj else None
        if obj is None:
            self._state, self._state_rv = dom.EMPTY, None
        elif rv != self._state_rv or rv is None:
            self._state, self._state_rv = dom.parse_state(obj.get("data")), rv
        return self._state

    @property
    def is_current(self) -> bool:
        """True when the view can be trusted: listed, watch alive, documents readable."""
        return self.problem() is None

    def problem(self) -> str | None:
        """Why current() cannot be trusted now (None when it can), naming the ConfigMap."""
        if not self._mirror.synced.is_set():
            if self._mirror.error is not None:
                return f"{self.where}: {self._mirror.error}"
            return f"{self.where}: not listed yet"
        if (p := self._mirror.problem()) is not None:
            return p
        problems = self.current().problems
        if problems:
            return f"{self.where} is unreadable: " + "; ".join(problems)
        return None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(current())`` after every change the watch sees."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def wait_for(self, predicate: Callable[[SharedState], bool], timeout: float) -> SharedState:  # noqa: ASYNC109
        """Return current() once predicate(current()) holds, re-checked on every change."""
        changed = asyncio.Event()
        unsubscribe = self.subscribe(lambda _s: changed.set())
        try:
            async with asyncio.timeout(timeout):
                while not predicate(state := self.current()):
                    await changed.wait()
                    changed.clear()
                return state
        finally:
            unsubscribe()

    def _on_event(self, _kind: str, _obj: Obj | None) -> None:
        state = self.current()
        if state.problems and state.problems != self._reported:
            log.warning("shared_state_unreadable", namespace=self.namespace, name=self.name,
                        problems=list(state.problems))
        self._reported = state.problems
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:  # a subscriber's bug must not stop the others
                log.exception("shared_state_listener_failed")

    def expired_since(self, since: datetime, now: datetime | None = None) -> tuple[RuntimeMute, ...]:
        """Mutes that expired in (since, now]: what a replica announces as expired."""
        return dom.expired_between(self.current().mutes, since, now or self.clock())

    # -- reads and writes ------------------------------------------------------------------

    async def _get(self) -> Obj | None:
        try:
            return await self.kube.call(f"get configmaps {self.namespace}/{self.name}",
                                        self.kube.core.read_namespaced_config_map, self.name, self.namespace)
        except KubeError as err:
            if err.not_found:
                return None
            raise

    async def read(self) -> SharedState:
        """The state as the API has it now (one GET); empty when the ConfigMap is absent."""
        obj = await self._get()
        return dom.parse_state((obj or {}).get("data"))

    async def _modify(self, what: str, change: Change[T]) -> T:
        """Apply ``change`` (pure: state -> (data keys to write, result)) until a write wins.
        An empty dict of keys means nothing to write."""
        results: list[T] = []

        async def write(current: Obj | None) -> Obj | None:
            state = dom.parse_state((current or {}).get("data"))
            data, result = change(state)
            results.append(result)
            if not data:
                return None
            for problem in state.problems:
                if problem.split(":")[0].split("[")[0].split(".")[0] in data:
                    log.warning("shared_state_repaired", namespace=self.namespace, name=self.name, problem=problem)
            if current is None:
                body: Obj = {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
                    "data": data,
                }
                return await self.kube.call(
                    f"create configmaps {self.namespace}", self.kube.core.create_namespaced_config_map,
                    self.namespace, body, retry_conflict=False, field_manager=self.kube.field_manager)
            body = dict(current)
            body["data"] = {**(current.get("data") or {}), **data}
            return await self.kube.call(
                f"update configmaps {self.namespace}/{self.name}", self.kube.core.replace_namespaced_config_map,
                self.name, self.namespace, body, retry_conflict=False, field_manager=self.kube.field_manager)

        written = await modify(self._get, write, what=f"{what} in {self.where}")
        if written is not None:
            await self._see_own_write(written)
        return results[-1]

    async def _see_own_write(self, written: Obj) -> None:
        """Wait (bounded) until our watch shows our write, so current() includes it."""
        if not self._started or not self._mirror.synced.is_set():
            return
        rv = written.get("metadata", {}).get("resourceVersion")
        seen = asyncio.Event()

        def check(_kind: str, obj: Obj | None) -> None:
            if obj is not None and obj.get("metadata", {}).get("resourceVersion") == rv:
                seen.set()

        unsubscribe = self._mirror.subscribe(check)
        try:
            check("", self._mirror.get(self.name))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OWN_WRITE_WAIT_SECONDS):
                    await seen.wait()
        finally:
            unsubscribe()

    def _targets(self) -> list[str]:
        return [t.name for t in self.config_provider().targets]

    # -- operations ------------------------------------------------------------------------------

    async def set_mute(self, target: str | None, by: str, reason: str, until: datetime) -> RuntimeMute:
        """Mute ``target`` (None: every target) until ``until``; replaces its earlier mute."""
        mute = dom.new_mute(target, by, reason, until, self.clock(), self._targets())  # ValueError: nothing written

        def change(state: SharedState) -> tuple[dict[str, str], RuntimeMute]:
            return {dom.KEY_MUTES: dom.encode_mutes(dom.with_mute(state.mutes, mute, mute.created_at))}, mute

        out = await self._modify("set mute", change)
        log.info("shared_mute_set", target=mute.target, by=mute.by, reason=mute.reason,
                 until=mute.until.isoformat(), namespace=self.namespace)
        return out

    async def clear_mute(self, target: str | None, by: str) -> RuntimeMute | None:
        """Remove ``target``'s run-time mute (None: the global one); the mute removed, if any."""
        if target is not None and target not in self._targets():
            raise ValueError(f"unknown target {target!r}; configured targets: {', '.join(sorted(self._targets()))}")
        if not by.strip():
            raise ValueError("who unmutes must be given (by)")
        now = self.clock()

        def change(state: SharedState) -> tuple[dict[str, str], RuntimeMute | None]:
            old = state.mute(target)
            if old is None:
                return {}, None
            return {dom.KEY_MUTES: dom.encode_mutes(dom.without_mute(state.mutes, target, now))}, old

        removed = await self._modify("clear mute", change)
        if removed is not None:
            log.info("shared_mute_cleared", target=removed.target, by=by.strip(), namespace=self.namespace)
        return removed

    async def open_breaker(self, targets: Iterable[str], reason: str) -> BreakerState:
        """Open the blast-radius breaker (no automatic rollbacks until a person closes it)."""
        now = self.clock()
        fresh = dom.opened(targets, reason, now, self._targets())  # ValueError: nothing written

        def change(state: SharedState) -> tuple[dict[str, str], BreakerState]:
            new = fresh
            if state.breaker.is_open:  # already open: add the targets, keep when it opened
                new = dom.BreakerState(
                    state="open", opened_at=state.breaker.opened_at or now,
                    reason=state.breaker.reason or fresh.reason,
                    targets=tuple(dict.fromkeys([*state.breaker.targets, *fresh.targets])),
                )
                if new == state.breaker:
                    return {}, new
            return {dom.KEY_BREAKER: dom.encode_breaker(new)}, new

        out = await self._modify("open breaker", change)
        log.warning("breaker_opened", targets=list(out.targets), reason=out.reason, namespace=self.namespace)
        return out

    async def close_breaker(self, by: str) -> BreakerState:
        """Close the breaker (automatic rollbacks resume); closing a closed one writes nothing."""
        now = self.clock()
        dom.closed(dom.CLOSED, by, now)  # validates ``by`` before any read or write

        def change(state: SharedState) -> tuple[dict[str, str], BreakerState]:
            if not state.breaker.is_open:
                return {}, state.breaker
            new = dom.closed(state.breaker, by, now)
            return {dom.KEY_BREAKER: dom.encode_breaker(new)}, new

        out = await self._modify("close breaker", change)
        log.info("breaker_closed", by=by.strip(), namespace=self.namespace)
        return out
