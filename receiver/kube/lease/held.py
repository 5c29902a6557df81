"""Acquire, renew and release a target's Lease, and the conflict loop every write uses."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime

import structlog

from receiver.domain.rollback import RollbackRecord
from receiver.kube import Kube, KubeError, Obj
from receiver.kube.lease.codec import (
    ANN_RECORD,
    RecordError,
    annotation,
    history_from_lease,
    holder,
    lease_body,
    record_from_lease,
)
from receiver.kube.optimistic import ConflictPersisted, modify

log = structlog.get_logger(__name__)

CONFLICT_ATTEMPTS = 5  # writes tried on a Lease that keeps changing before giving up


class LeaseLost(Exception):
    """Another replica holds the Lease now: stop changing the cluster."""


async def update_lease(
    kube: Kube, namespace: str, name: str, change: Callable[[Obj], Obj | None],
    *, current: Obj | None = None,
) -> Obj | None:
    """Write ``change(lease)`` with the resourceVersion read; on 409 re-read and retry.

    ``change`` sees the Lease as last read (``current`` first, when given, saving a read)
    and returns the body to write, or None to write nothing (then None is returned); it
    may raise (e.g. LeaseLost when someone else holds it now). Other errors propagate,
    KubeError not_found from the read included. RecordError after CONFLICT_ATTEMPTS
    conflicts in a row."""
    first = [current] if current is not None else []

    async def read() -> Obj:
        return first.pop() if first else await kube.read_lease(namespace, name)

    async def write(lease: Obj) -> Obj | None:
        body = change(lease)
        return None if body is None else await kube.replace_lease(namespace, name, body)

    try:
        return await modify(read, write, attempts=CONFLICT_ATTEMPTS, what=f"lease {namespace}/{name}")
    except ConflictPersisted as err:
        raise RecordError(f"lease {namespace}/{name} kept changing under us") from err


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

    def check(self) -> None:
        """Raise LeaseLost once another replica took the Lease (call before each change)."""
        if self.lost.is_set():
            raise LeaseLost("the target's lease was lost; another replica continues")

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
        def change(lease: Obj) -> Obj:
            if lease is not self.lease:  # re-read after a 409
                if holder(lease) not in (self.identity, ""):
                    self.lost.set()  # whoever asked for this write: the steps stop too
                    raise LeaseLost(
                        f"lease {self.namespace}/{self.name} now held by {holder(lease)}")
                if _other_record(lease, record.id):  # another run held it and let go since
                    self.lost.set()
                    raise LeaseLost(f"lease {self.namespace}/{self.name} carries another record now")
                self.lease = lease  # someone touched it (e.g. annotated): write on top
            body = lease_body(
                self.namespace, self.name, self.target, self.identity, self.duration,
                self.clock(), record, history, lease,
            )
            if release:
                body["spec"]["holderIdentity"] = ""
                body["spec"]["leaseDurationSeconds"] = 1
            return body

        async with self._lock:
            written = await update_lease(self.kube, self.namespace, self.name, change,
                                         current=self.lease)
            assert written is not None  # change() always writes
            self.lease = written
            self._last_renew = time.monotonic()

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


def _other_record(lease: Obj, record_id: str) -> bool:
    """Whether the Lease carries another run's record (e.g. a rollback that pre-empted a
    promotion and finished before the promotion's next renewal)."""
    try:
        current = record_from_lease(lease)
    except RecordError:
        return False
    return current is not None and current.id != record_id


def _written_by_us(lease: Obj, body: Obj, identity: str) -> bool:
    """Whether ``lease`` is our own write of ``body`` (its answer lost, a re-send got 409)."""
    return holder(lease) == identity and (
        annotation(lease, ANN_RECORD) == body["metadata"]["annotations"][ANN_RECORD]
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
    def held(lease: Obj, record: RollbackRecord, history: list[RollbackRecord]) -> HeldLease:
        return HeldLease(kube, namespace, name, target, identity, duration, lease, record,
                         history, clock)

    current: Obj | None = None
    reread = True
    if cached is not None and (record := choose(cached)) is not None:
        history = history_from_lease(cached)
        body = lease_body(namespace, name, target, identity, duration, clock(), record,
                          None, cached)
        try:
            written = await kube.replace_lease(namespace, name, body)
            return held(written, record, history), written
        except KubeError as err:
            if not (err.conflict or err.not_found):
                raise
            if err.conflict:
                # a 409 may answer the gateway's re-send of our own write whose answer was
                # lost: the Lease then names us with our record, and it is ours to run
                current, reread = await kube.read_lease(namespace, name), False
                if _written_by_us(current, body, identity):
                    return held(current, record, history), current
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
    return held(written, record, history), written
