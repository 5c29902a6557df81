"""TargetWatcher: each configured target's state kept current by list+watch.

decide() needs replica counts and running rollbacks for every webhook; reading the API
per webhook would make intake as slow and as fragile as the API server. Instead one
Deployment watch per target namespace and one Lease watch per lease namespace keep an
in-memory view that ``states()`` turns into TargetState in microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from kubernetes_asyncio.client import ApiClient

from receiver.config import Config, Target
from receiver.core.decisions import TargetState
from receiver.core.rollback import RollbackRecord
from receiver.kube import Kube, Mirror, Obj
from receiver.lease_observations import LeaseObservations
from receiver.records import (
    LEASE_SELECTOR,
    RecordError,
    history_from_lease,
    lease_expired,
    lease_name,
    lease_namespace,
    recent_finish_times,
    record_from_lease,
)

log = structlog.get_logger(__name__)


def _replicas(deploy: Obj | None) -> int | None:
    if deploy is None:
        return None
    return int((deploy.get("spec") or {}).get("replicas", 1))


def read_records(lease: Obj | None) -> tuple[RollbackRecord | None, tuple[RollbackRecord, ...]]:
    """The current and past rollback records a Lease carries (an unreadable one counts as none)."""
    try:
        current = record_from_lease(lease)
    except RecordError:
        current = None
    return current, tuple(history_from_lease(lease))


class RecordCache:
    """read_records, parsed once per Lease resourceVersion.

    states() runs on every webhook; parsing the records' JSON each time cost ~60 us per
    target, most of a webhook's budget, for data that changes only when the Lease does.
    """

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[str, tuple[RollbackRecord | None, tuple[RollbackRecord, ...]]]] = {}

    def __call__(self, lease: Obj | None) -> tuple[RollbackRecord | None, tuple[RollbackRecord, ...]]:
        if lease is None:
            return None, ()
        meta = lease.get("metadata") or {}
        key, version = f"{meta.get('namespace')}/{meta.get('name')}", str(meta.get("resourceVersion"))
        hit = self._parsed.get(key)
        if hit is None or hit[0] != version:
            hit = (version, read_records(lease))
            self._parsed[key] = hit
        return hit[1]


def target_state(
    target: Target, config: Config, deploys: Mirror | None, leases: Mirror | None,
    now: datetime, records_of: Callable[[Obj | None], tuple[RollbackRecord | None, tuple[RollbackRecord, ...]]]
    | None = None,
    expired: Callable[[Obj], bool] | None = None,
) -> TargetState:
    """What is known of one target from the mirrors (None where not synced yet).

    ``expired`` judges the Lease (TargetWatcher passes client-go's local-observation
    rule); without it, renewTime is compared with ``now``."""
    stable = canary = None
    stable_exists: bool | None = None
    if deploys is not None and deploys.synced.is_set():
        stable = deploys.get(target.stable)
        canary = deploys.get(target.canary)
        stable_exists = stable is not None
    running: str | None = None
    records: list[RollbackRecord] = []
    if leases is not None and leases.synced.is_set():
        lease = leases.get(lease_name(target))
        current, history = (records_of or read_records)(lease)
        if current is not None and lease is not None:
            gone = expired(lease) if expired is not None else lease_expired(lease, now)
            if not current.phase.finished and not gone:
                running = current.id
            records.append(current)
        records.extend(history)
    finished = recent_finish_times(records)
    ready = ((stable or {}).get("status") or {}).get("readyReplicas", 0) if stable else None
    return TargetState(
        canary_replicas=_replicas(canary),
        stable_replicas=_replicas(stable),
        stable_ready=ready,
        stable_exists=stable_exists,
        rollback_running=running,
        recent_rollbacks=finished,
        last_rollback_finished=finished[0] if finished else None,
    )


class TargetWatcher:
    """Keeps TargetState for every configured target from Deployment and Lease watches."""

    def __init__(
        self,
        api: ApiClient,
        config_provider: Callable[[], Config],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        kube: Kube | None = None,
        *,
        identity: str | None = None,
        observations: LeaseObservations | None = None,
    ) -> None:
        self.kube = kube or Kube(api)
        self.config_provider = config_provider
        self.clock = clock
        self.identity = identity  # Leases naming it are judged by our clock, as we wrote them
        # when each Lease was seen to change: shared with the Executor in `receiver serve`
        self.observations = observations or LeaseObservations()
        self._deploys: dict[str, Mirror] = {}
        self._leases: dict[str, Mirror] = {}
        self._records = RecordCache()
        self._started = False

    def _ensure_mirrors(self, config: Config) -> None:
        """Start a watch for any namespace a (re)loaded config added."""
        if not self._started:
            return
        for t in config.targets:
            if t.namespace not in self._deploys:
                m = Mirror(self.kube, "deployments", t.namespace)
                self._deploys[t.namespace] = m
                m.start()
            ns = lease_namespace(config, t)
            if ns not in self._leases:
                m = Mirror(self.kube, "leases", ns, label_selector=LEASE_SELECTOR)
                m.subscribe(self._observer(m))
                self._leases[ns] = m
                m.start()

    def _observer(self, mirror: Mirror) -> Callable[[str, Obj | None], None]:
        """Note each Lease change as the watch delivers it, so expiry counts from then."""

        def seen(kind: str, obj: Obj | None) -> None:
            if kind == "SYNC":
                for lease in mirror.items.values():
                    self.observations.observe(lease)
            elif obj is not None and kind == "DELETED":
                self.observations.forget(obj)
            elif obj is not None:
                self.observations.observe(obj)

        return seen

    def lease_expired(self, lease: Obj) -> bool:
        """client-go's rule for other holders; our own identity's by our clock, as before."""
        spec = lease.get("spec") or {}
        if self.identity and spec.get("holderIdentity") == self.identity:
            return lease_expired(lease, self.clock())
        return self.observations.expired(
            lease, self.config_provider().settings.lease_duration_seconds)

    async def start(self) -> None:
        self._started = True
        self._ensure_mirrors(self.config_provider())

    async def stop(self) -> None:
        self._started = False
        mirrors = [*self._deploys.values(), *self._leases.values()]
        self._deploys.clear()
        self._leases.clear()
        for m in mirrors:
            await m.stop()

    async def wait_synced(self, timeout: float) -> None:  # noqa: ASYNC109 (interface)
        """Wait until every watch has listed once (TimeoutError otherwise)."""
        self._ensure_mirrors(self.config_provider())
        mirrors = [*self._deploys.values(), *self._leases.values()]
        async with asyncio.timeout(timeout):
            for m in mirrors:
                await m.synced.wait()

    def states(self) -> dict[str, TargetState]:
        config = self.config_provider()
        self._ensure_mirrors(config)
        now = self.clock()
        return {
            t.name: target_state(
                t, config, self._deploys.get(t.namespace),
                self._leases.get(lease_namespace(config, t)), now, self._records,
                self.lease_expired,
            )
            for t in config.targets
        }

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        """Return once predicate() holds, re-checking on every watch event (TimeoutError otherwise)."""
        changed = asyncio.Event()
        mirrors = [*self._deploys.values(), *self._leases.values()]
        unsubscribe = [m.subscribe(lambda _type, _obj: changed.set()) for m in mirrors]
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await changed.wait()
                    changed.clear()
        finally:
            for u in unsubscribe:
                u()

    def orphaned(self) -> list[str]:
        """Targets whose Lease holds an unfinished rollback nobody renews (its holder died).

        Cheap (the Lease watch's memory): the receiver checks it every few seconds so a
        running replica takes over a dead one's rollback without waiting for a restart.
        """
        config = self.config_provider()
        out = []
        for t in config.targets:
            leases = self._leases.get(lease_namespace(config, t))
            if leases is None or not leases.synced.is_set():
                continue
            lease = leases.get(lease_name(t))
            current, _ = self._records(lease)
            if lease is not None and current is not None and not current.phase.finished \
                    and not current.dry_run and self.lease_expired(lease):
                out.append(t.name)
        return out

    def errors(self) -> list[str]:
        """Non-transient watch failures (e.g. 403), for /health to report."""
        out = []
        for m in [*self._deploys.values(), *self._leases.values()]:
            if m.error is not None:
                out.append(str(m.error))
        return out

    def healthy(self) -> str | None:
        """None when every watch is alive and current; else what is wrong, for /health/ready.

        A watch that died, was refused (403) or keeps failing means decisions are made
        from a stale copy of the cluster: the receiver should not count itself ready.
        """
        problems = [p for m in [*self._deploys.values(), *self._leases.values()]
                    if (p := m.problem()) is not None]
        return "; ".join(problems) or None

    async def __aenter__(self) -> TargetWatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.stop()
