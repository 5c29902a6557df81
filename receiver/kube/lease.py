"""A target's Lease: one rollback per target across every receiver replica.

client-go's rules: read the Lease; if another holder's Lease changed within its
leaseDurationSeconds of *local* time (receiver.kube.lease_observations; never its renewTime
against our clock), back off; otherwise write it back carrying the resourceVersion
that was read, so of two replicas racing only one write succeeds (the other gets 409).
leaseTransitions counts changes of holder; release clears holderIdentity. The Lease
also carries the rollback's record, rewritten as it changes and at each renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime

import structlog

from receiver.domain.rollback import RollbackRecord
from receiver.kube import Kube, KubeError, Obj, micro_time
from receiver.kube.records import (
    ANN_HISTORY,
    ANN_RECORD,
    LABEL_MANAGED_BY,
    LABEL_TARGET,
    MANAGED_BY,
    RecordError,
    encode_history,
    encode_record,
    history_from_lease,
    holder,
)

log = structlog.get_logger(__name__)


class LeaseLost(Exception):
    """Another replica holds the Lease now: stop changing the cluster."""


def lease_body(
    namespace: str, name: str, target: str, identity: str, duration: int,
    now: datetime, record: RollbackRecord, history: list[RollbackRecord] | None,
    previous: Obj | None,
) -> Obj:
    """The Lease we write when acquiring, renewing or updating the record.

    ``history`` None keeps the previous history annotation as it is (it only changes
    when a rollback finishes, and encoding it on every renewal is wasted work)."""
    # copies only the dicts changed below: the rest (managedFields, ownerReferences...)
    # is shared with ``previous``, never mutated, and a deep copy of it on every write
    # cost more than the write's own JSON
    body: Obj = dict(previous) if previous else {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace}, "spec": {},
    }
    meta = body["metadata"] = dict(body.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}),
                      LABEL_MANAGED_BY: MANAGED_BY, LABEL_TARGET: target}
    annotations = meta["annotations"] = dict(meta.get("annotations") or {})
    annotations[ANN_RECORD] = encode_record(record)
    if history is not None:
        annotations[ANN_HISTORY] = encode_history(history)
    else:
        annotations.setdefault(ANN_HISTORY, "[]")
    spec = body["spec"] = dict(body.get("spec") or {})
    old_holder = spec.get("holderIdentity") or ""
    if old_holder != identity:
        spec["acquireTime"] = micro_time(now)
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if previous else 0)
    spec["holderIdentity"] = identity
    spec["leaseDurationSeconds"] = duration
    spec["renewTime"] = micro_time(now)
    return body


class HeldLease:
    """A Lease we hold: renewed in the background, carrying the latest record."""

    COALESCE_SECONDS = 0.05

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        target: str,
        identity: str,
        duration: int,
        lease: Obj,
        record: RollbackRecord,
        history: list[RollbackRecord],
        clock: Callable[[], datetime],
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.target = target
        self.identity = identity
        self.duration = duration
        self.lease = lease
        self.record = record
        self.history = history
        self.clock = clock
        self.lost = asyncio.Event()
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_renew = time.monotonic()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._keep(), name=f"lease {self.name}")

    def update(self, record: RollbackRecord, *, soon: bool = True) -> None:
        """Remember the latest record: written within ~50 ms (coalesced), or with the
        next renewal when ``soon`` is False (progress counts change often and matter less)."""
        self.record = record
        if soon:
            self._dirty.set()

    async def flush(self) -> None:
        """Write the current record now."""
        await self._write(self.record, None, release=False)

    async def _keep(self) -> None:
        """Renew every duration/3, and whenever the record changed."""
        interval = max(self.duration / 3, 0.05)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._dirty.wait()
                    # coalesce a burst of step and progress changes into one write
                    await asyncio.sleep(min(self.COALESCE_SECONDS, interval))
            self._dirty.clear()
            try:
                async with asyncio.timeout(max(self.duration * 2 / 3, 0.5)):
                    await self._write(self.record, None, release=False)
            except LeaseLost:
                self.lost.set()
                return
            except (KubeError, TimeoutError) as err:
                log.warning("lease_renew_failed", lease=self.name, target=self.target,
                            rollback_id=self.record.id, error=str(err))
                if time.monotonic() - self._last_renew > self.duration:
                    log.error("lease_expired_locally", lease=self.name, target=self.target,
                              rollback_id=self.record.id)
                    self.lost.set()
                    return

    async def _write(
        self, record: RollbackRecord, history: list[RollbackRecord] | None, *, release: bool
    ) -> None:
        async with self._lock:
            for _ in range(5):
                body = lease_body(
                    self.namespace, self.name, self.target, self.identity, self.duration,
                    self.clock(), record, history, self.lease,
                )
                if release:
                    body["spec"]["holderIdentity"] = ""
                    body["spec"]["leaseDurationSeconds"] = 1
                try:
                    self.lease = await self.kube.replace_lease(self.namespace, self.name, body)
                    self._last_renew = time.monotonic()
                    return
                except KubeError as err:
                    if not err.conflict:
                        raise
                fresh = await self.kube.read_lease(self.namespace, self.name)
                if holder(fresh) not in (self.identity, ""):
                    raise LeaseLost(f"lease {self.namespace}/{self.name} now held by {holder(fresh)}")
                self.lease = fresh  # someone touched it (e.g. annotated): write on top
            raise RecordError(f"lease {self.namespace}/{self.name} kept changing under us")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def release(self, record: RollbackRecord, history: list[RollbackRecord]) -> None:
        """Stop renewing and clear the holder, leaving the record readable.

        A renewal already sent is let finish first: cancelled mid-request it may still
        land on the server, leaving our copy a resourceVersion behind (a 409, a re-read
        and a second write, for most of 200 rollbacks finishing at once)."""
        async with self._lock:
            await self.stop()
        self.record = record
        self.history = history
        await self._write(record, history, release=True)


def _written_by_us(lease: Obj, body: Obj, identity: str) -> bool:
    """Whether ``lease`` is our own write of ``body`` (its answer lost, a re-send got 409)."""
    return holder(lease) == identity and (
        ((lease.get("metadata") or {}).get("annotations") or {}).get(ANN_RECORD)
        == body["metadata"]["annotations"][ANN_RECORD]
    )


async def try_acquire(
    kube: Kube,
    namespace: str,
    name: str,
    target: str,
    identity: str,
    duration: int,
    clock: Callable[[], datetime],
    choose: Callable[[Obj | None], RollbackRecord | None],
    cached: Obj | None = None,
) -> tuple[HeldLease | None, Obj | None]:
    """Take the Lease if free or expired; ``choose`` sees it and picks the record.

    ``choose`` returns None to back off (a live holder, the same rollback running).
    Returns no HeldLease too when another replica wins the race (409). Also returns the
    Lease as last seen, for the caller's cache.

    ``cached``: the Lease as this process last saw it. When it shows the Lease free, the
    write is tried on it directly (one round trip less); a stale copy only costs a 409,
    after which the Lease is read as usual. A cached "held by someone" is never trusted.
    """
    current: Obj | None = None
    reread = True
    if cached is not None and (record := choose(cached)) is not None:
        history = history_from_lease(cached)
        body = lease_body(namespace, name, target, identity, duration, clock(), record,
                          None, cached)
        try:
            written = await kube.replace_lease(namespace, name, body)
            return HeldLease(kube, namespace, name, target, identity, duration, written,
                             record, history, clock), written
        except KubeError as err:
            if not (err.conflict or err.not_found):
                raise
            if err.conflict:
                # a 409 may answer the gateway's re-send of our own write whose answer was
                # lost: the Lease then names us with our record, and it is ours to run
                current, reread = await kube.read_lease(namespace, name), False
                if _written_by_us(current, body, identity):
                    return HeldLease(kube, namespace, name, target, identity, duration,
                                     current, record, history, clock), current
    if reread:
        try:
            current = await kube.read_lease(namespace, name)
        except KubeError as err:
            if not err.not_found:
                raise
            current = None
    record = choose(current)
    if record is None:
        return None, current
    history = history_from_lease(current)
    body = lease_body(namespace, name, target, identity, duration, clock(), record, None,
                      current)
    try:
        if current is None:
            written = await kube.create_lease(namespace, body)
        else:
            written = await kube.replace_lease(namespace, name, body)
    except KubeError as err:
        if not err.conflict:
            raise
        # 409: another replica won, unless our own write landed before a dropped
        # connection made the gateway send it again
        fresh = await kube.read_lease(namespace, name)
        if not _written_by_us(fresh, body, identity):
            log.info("lease_race_lost", lease=name)
            return None, fresh
        written = fresh
    return HeldLease(kube, namespace, name, target, identity, duration, written, record,
                     history, clock), written
