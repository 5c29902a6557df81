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
from typing import Any, cast

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
            if not current.phase.finished and not gone and not current.is_promotion:
                running = current.id  # a promotion is no rollback: an alert pre-empts it
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
        """The named targets' state read from the API now (quorum GETs), not the watches.

        Quiet answers ("already rolled back", "in progress") are never retried by
        Alertmanager; a watch that lags (a canary scaled back up seconds ago) must not
        produce one. Raises ViewNotCurrent when the API cannot answer in time.
        """
        config = self.config_provider()
        targets = [t for t in config.targets if t.name in names]

        async def get(read: Callable[[str, str], Any], ns: str, name: str) -> Obj | None:
            try:
                return cast(Obj, await read(ns, name))
            except KubeError as err:
                if err.not_found:
                    return None
                raise

        async def one(t: Target) -> TargetState:
            lease_ns = lease_namespace(config, t)
            stable, canary, lease = await asyncio.gather(
                get(self.kube.read_deployment, t.namespace, t.stable),
                get(self.kube.read_deployment, t.namespace, t.canary),
                get(self.kube.read_lease, lease_ns, lease_name(t)),
            )
            if lease is not None:
                self.observations.observe(lease)
            return state_of(t, deployment_view(stable) if stable is not None else None,
                            deployment_view(canary) if canary is not None else None,
                            True, lease, True, self.clock(),
                            self._records, self.lease_expired)

        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_SECONDS):
                found = await asyncio.gather(*(one(t) for t in targets))
        except (KubeError, TimeoutError) as err:
            raise ViewNotCurrent(
                f"could not confirm the state of {', '.join(names)} with the Kubernetes API: "
                f"{err or 'timed out'}") from err
        return {t.name: st for t, st in zip(targets, found, strict=True)}

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
                    and not current.dry_run and not current.is_promotion and self.lease_expired(lease):
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
