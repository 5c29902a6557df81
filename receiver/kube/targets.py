"""TargetWatcher: each configured target's state kept current by list+watch.

decide() needs replica counts and running rollbacks for every webhook; reading the API
per webhook would make intake as slow and as fragile as the API server. Instead one
Deployment watch per target namespace and one Lease watch per lease namespace keep an
in-memory view that ``states()`` turns into TargetState in microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, cast

import structlog
from kubernetes_asyncio.client import ApiClient

from receiver.domain.decisions import TargetState, missing_objects
from receiver.domain.kube_views import DeploymentView, deployment_view, ready_replicas, replicas
from receiver.domain.rollback import RollbackRecord
from receiver.domain.settings import Config, Target
from receiver.kube import Kube, Mirror, Obj
from receiver.kube.errors import KubeError
from receiver.kube.lease import (
    LEASE_SELECTOR,
    LeaseObservations,
    RecordCache,
    is_expired,
    lease_expired,
    lease_name,
    lease_namespace,
    read_records,
)
from receiver.kube.records import recent_finish_times
from receiver.metrics import Metrics

log = structlog.get_logger(__name__)




def target_state(
    target: Target, config: Config, deploys: Mirror | None, leases: Mirror | None,
    now: datetime, records_of: Callable[[Obj | None], tuple[RollbackRecord | None, tuple[RollbackRecord, ...]]]
    | None = None,
    expired: Callable[[Obj], bool] | None = None,
) -> TargetState:
    """What is known of one target from the mirrors (None where not synced yet).

    ``expired`` judges the Lease (TargetWatcher passes client-go's local-observation
    rule); without it, renewTime is compared with ``now``."""
    deploys_known = deploys is not None and deploys.synced.is_set()
    leases_known = leases is not None and leases.synced.is_set()
    return state_of(
        target,
        deploys.view(target.stable, deployment_view) if deploys is not None and deploys_known else None,
        deploys.view(target.canary, deployment_view) if deploys is not None and deploys_known else None,
        deploys_known,
        leases.get(lease_name(target)) if leases is not None and leases_known else None,
        leases_known,
        now, records_of, expired,
    )


def state_of(
    target: Target, stable: DeploymentView | None, canary: DeploymentView | None, deploys_known: bool,
    lease: Obj | None, leases_known: bool, now: datetime,
    records_of: Callable[[Obj | None], tuple[RollbackRecord | None, tuple[RollbackRecord, ...]]]
    | None = None,
    expired: Callable[[Obj], bool] | None = None,
) -> TargetState:
    """TargetState from the objects themselves (a watch's copy or a fresh GET)."""
    running: str | None = None
    records: list[RollbackRecord] = []
    if leases_known:
        current, history = (records_of or read_records)(lease)
        if current is not None and lease is not None:
            gone = expired(lease) if expired is not None else lease_expired(lease, now)
            if not current.phase.finished and not gone:
                running = current.id
            records.append(current)
        records.extend(history)
    finished = recent_finish_times(records)
    return TargetState(
        canary_replicas=replicas(canary),
        stable_replicas=replicas(stable),
        stable_ready=ready_replicas(stable),
        stable_exists=(stable is not None) if deploys_known else None,
        canary_exists=(canary is not None) if deploys_known else None,
        rollback_running=running,
        recent_rollbacks=finished,
        last_rollback_finished=finished[0] if finished else None,
    )


class ViewNotCurrent(Exception):
    """The API could not confirm what the watches show (answer 503: Alertmanager retries)."""


#: How long a webhook waits for the confirming reads before answering 503.
CONFIRM_TIMEOUT_SECONDS = 5.0

T = TypeVar("T")
_Objects = tuple[DeploymentView | None, DeploymentView | None, Obj | None]  # stable, canary, Lease; None: not found


class ConfirmingReads(Generic[T]):
    """Reads that confirm a quiet answer, shared by the askers that arrive together.

    The rule (DESIGN.md): a quiet answer is given only from a view known to be current,
    or confirmed against the API. A watch cannot know it is current (it hears of a change
    only when it arrives), so "confirmed" means: read from the API by a request sent
    *after* the webhook arrived. A read already in flight when an asker arrives was sent
    before it and may miss a change made in between, so the asker waits for the next
    read, which starts as soon as the one in flight ends and serves everyone who arrived
    meanwhile (single-flight with one queued read, like a group commit). At most two reads
    per target are pending; a burst of N concurrent deliveries costs about two reads, not
    N, and each answer is still confirmed by a read younger than its webhook.

    Reusing a confirmation for a few hundred milliseconds while the watch shows the same
    resourceVersions was considered and not done: a watch that delivers nothing new may be
    current or stalled, the two look the same, and a change made inside the reuse window
    (tests/executor/test_webhook_on_cluster.py, byte-identical re-send while the watch
    lags) would again be answered "already rolled back".
    """

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._running: asyncio.Task[T] | None = None
        self._queued: asyncio.Task[T] | None = None

    async def fresh(self) -> T:
        """The result of a read sent after this call (shared with concurrent callers)."""
        if self._running is None:
            task = self._running = self._spawn(None)
        else:
            if self._queued is None:
                self._queued = self._spawn(self._running)
            task = self._queued
        return await asyncio.shield(task)  # a caller that gives up does not cancel the others

    def _spawn(self, after: asyncio.Task[T] | None) -> asyncio.Task[T]:
        task = asyncio.create_task(self._run(after))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # every caller may have left
        return task

    async def _run(self, after: asyncio.Task[T] | None) -> T:
        me = asyncio.current_task()
        if after is not None:
            await asyncio.wait([after])  # its outcome is its own callers'
            self._queued = None
            self._running = cast("asyncio.Task[T]", me)
        try:
            return await self._read()
        finally:
            if self._running is me:
                self._running = None


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
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or (kube.metrics if kube is not None else Metrics.create())
        self.kube = kube or Kube(api, metrics=self.metrics)
        self.config_provider = config_provider
        self.clock = clock
        self.identity = identity  # Leases naming it are judged by our clock, as we wrote them
        # when each Lease was seen to change: shared with the Executor in `receiver serve`
        self.observations = observations or LeaseObservations()
        self._deploys: dict[str, Mirror] = {}
        self._leases: dict[str, Mirror] = {}
        self._records = RecordCache()
        self._started = False
        self._broken: dict[str, str] = {}  # target -> what is missing, as last computed
        self._broken_for: Config | None = None  # the config _broken was computed for
        # per target's (namespace, stable, canary, lease namespace, lease name)
        self._confirming: dict[tuple[str, str, str, str, str], ConfirmingReads[_Objects]] = {}

    def _ensure_mirrors(self, config: Config) -> None:
        """Start a watch for any namespace a (re)loaded config added."""
        if not self._started:
            return
        for t in config.targets:
            if t.namespace not in self._deploys:
                m = Mirror(self.kube, "deployments", t.namespace)
                m.subscribe(self._on_deployment)
                self._deploys[t.namespace] = m
                m.start()
            ns = lease_namespace(config, t)
            if ns not in self._leases:
                m = Mirror(self.kube, "leases", ns, label_selector=LEASE_SELECTOR)
                self.observations.follow(m)
                self._leases[ns] = m
                m.start()
        if self._broken_for is not None and self._broken_for is not config:
            self._check_targets()  # a reload may have fixed (or broken) a target

    def _on_deployment(self, _kind: str, _obj: Obj | None) -> None:
        self._check_targets()

    def _check_targets(self) -> dict[str, str]:
        """Which targets name a Deployment that does not exist, kept in a gauge and
        logged once per change (error when it breaks, info when it is fixed)."""
        config = self.config_provider()
        broken: dict[str, str] = {}
        for t in config.targets:
            m = self._deploys.get(t.namespace)
            if m is None or not m.synced.is_set():
                continue
            state = TargetState(stable_exists=m.get(t.stable) is not None,
                                canary_exists=m.get(t.canary) is not None)
            if missing := missing_objects(t, state):
                broken[t.name] = f"{' and '.join(missing)} not found"
        for name in set(self._broken) - set(broken):
            log.info("target_configuration_fixed", target=name)
        for name, why in broken.items():
            if self._broken.get(name) != why:
                log.error("target_misconfigured", target=name, missing=why)
        for t in config.targets:
            self.metrics.target_misconfigured.labels(t.name).set(1 if t.name in broken else 0)
        if self._broken_for is not None and self._broken_for is not config:
            for gone in {t.name for t in self._broken_for.targets} - {t.name for t in config.targets}:
                with contextlib.suppress(KeyError):
                    self.metrics.target_misconfigured.remove(gone)
        self._broken, self._broken_for = broken, config
        return broken

    def misconfigured(self) -> dict[str, str]:
        """Targets that cannot be rolled back, with what is missing (for /health)."""
        self._ensure_mirrors(self.config_provider())
        return dict(self._check_targets())

    async def confirm(self, names: list[str]) -> dict[str, TargetState]:
        """The named targets' state read from the API (quorum GETs), not from the watches.

        Quiet answers ("already rolled back", "in progress") are never retried by
        Alertmanager; a watch that lags (a canary scaled back up seconds ago) must not
        produce one. Every answer is confirmed by reads *sent after it was asked for*;
        concurrent askers share them (see ConfirmingReads), so a burst of deliveries costs
        a few reads per target, not three per delivery. Raises ViewNotCurrent when the
        API cannot answer in time.
        """
        config = self.config_provider()
        targets = [t for t in config.targets if t.name in names]

        async def one(t: Target) -> TargetState:
            stable, canary, lease = await self._reads_of(config, t).fresh()
            return state_of(t, stable, canary, True, lease, True, self.clock(),
                            self._records, self.lease_expired)  # expiry by each asker's clock

        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_SECONDS):
                found = await asyncio.gather(*(one(t) for t in targets))
        except (KubeError, TimeoutError) as err:
            raise ViewNotCurrent(
                f"could not confirm the state of {', '.join(names)} with the Kubernetes API: "
                f"{err or 'timed out'}") from err
        return {t.name: st for t, st in zip(targets, found, strict=True)}

    def _reads_of(self, config: Config, t: Target) -> ConfirmingReads[_Objects]:
        """The shared confirming reads of the three objects a target's state comes from."""
        key = (t.namespace, t.stable, t.canary, lease_namespace(config, t), lease_name(t))
        reads = self._confirming.get(key)
        if reads is None:
            reads = self._confirming[key] = ConfirmingReads(lambda: self._read_objects(*key))
        return reads

    async def _read_objects(self, ns: str, stable: str, canary: str, lease_ns: str, lease: str) -> _Objects:
        async def get(read: Callable[[str, str], Any], ns: str, name: str) -> Obj | None:
            try:
                return cast(Obj, await read(ns, name))
            except KubeError as err:
                if err.not_found:
                    return None
                raise

        objs = await asyncio.gather(
            get(self.kube.read_deployment, ns, stable),
            get(self.kube.read_deployment, ns, canary),
            get(self.kube.read_lease, lease_ns, lease),
        )
        if objs[2] is not None:
            self.observations.observe(objs[2])
        # the views once per read, not once per asker sharing it
        return (deployment_view(objs[0]) if objs[0] is not None else None,
                deployment_view(objs[1]) if objs[1] is not None else None, objs[2])

    def lease_expired(self, lease: Obj) -> bool:
        """client-go's rule for other holders; our own identity's by our clock, as before."""
        return is_expired(lease, identity=self.identity, observations=self.observations,
                          now=self.clock(),
                          duration=self.config_provider().settings.lease_duration_seconds)

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
