"""A target's Lease: one rollback per target across every receiver replica.

Everything about the Lease lives here: its name and labels, the record codec (the
rollback's record and history kept in its annotations), expiry, the conflict loop, and
acquire / renew / release.

client-go's rules: read the Lease; if another holder's Lease changed within its
leaseDurationSeconds of *local* time (LeaseObservations; never its renewTime against our
clock), back off; otherwise write it back carrying the resourceVersion that was read, so
of two replicas racing only one write succeeds (the other gets 409). leaseTransitions
counts changes of holder; release clears holderIdentity. The Lease also carries the
rollback's record, rewritten as it changes and at each renewal, so any replica can answer
GET /rollbacks, resume a half-done rollback, or count recent rollbacks for fight detection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from receiver.domain.rollback import RollbackRecord
from receiver.domain.settings import Config, Target
from receiver.kube import Kube, KubeError, Mirror, Obj, micro_time, parse_time

log = structlog.get_logger(__name__)

DOMAIN = "rollback-receiver.io"
ANN_RECORD = f"{DOMAIN}/record"
ANN_HISTORY = f"{DOMAIN}/history"
LABEL_TARGET = f"{DOMAIN}/target"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "rollback-receiver"
LEASE_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
HISTORY_KEEP = 10
CONFLICT_ATTEMPTS = 5  # writes tried on a Lease that keeps changing before giving up


class RecordError(Exception):
    """The rollback's record could not be written to or read from the cluster."""


class LeaseLost(Exception):
    """Another replica holds the Lease now: stop changing the cluster."""


def lease_name(target: Target) -> str:
    return f"rollback-{target.name}"


def lease_namespace(config: Config, target: Target) -> str:
    return config.settings.lease_namespace or target.namespace


def holder(lease: Obj | None) -> str:
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


# -- the record codec ----------------------------------------------------------------------

Records = tuple[RollbackRecord | None, tuple[RollbackRecord, ...]]


def _annotation(lease: Obj, key: str) -> str | None:
    value = ((lease.get("metadata") or {}).get("annotations") or {}).get(key)
    return str(value) if value else None


def record_from_lease(lease: Obj | None) -> RollbackRecord | None:
    """The record held in a Lease's annotation, or None (RecordError if unreadable)."""
    if not lease:
        return None
    text = _annotation(lease, ANN_RECORD)
    if not text:
        return None
    try:
        return RollbackRecord.from_json(json.loads(text))
    except (ValueError, TypeError, KeyError) as e:
        raise RecordError(f"unreadable rollback record in lease: {e}") from e


def history_from_lease(lease: Obj | None) -> list[RollbackRecord]:
    """Finished records kept in the Lease, newest first; unreadable entries skipped."""
    if not lease:
        return []
    text = _annotation(lease, ANN_HISTORY)
    if not text:
        return []
    out: list[RollbackRecord] = []
    try:
        entries = json.loads(text)
    except ValueError:
        return []
    for entry in entries if isinstance(entries, list) else []:
        try:
            out.append(RollbackRecord.from_json(entry))
        except (ValueError, TypeError, KeyError):
            continue
    return out


def read_records(lease: Obj | None) -> Records:
    """The current and past rollback records a Lease carries (an unreadable one counts as none)."""
    try:
        current = record_from_lease(lease)
    except RecordError:
        current = None
    return current, tuple(history_from_lease(lease))


class RecordCache:
    """read_records, parsed once per Lease resourceVersion.

    TargetWatcher.states() runs on every webhook; parsing the records' JSON each time cost
    ~60 us per target, most of a webhook's budget, for data that changes only when the
    Lease does.
    """

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[str, Records]] = {}

    def __call__(self, lease: Obj | None) -> Records:
        if lease is None:
            return None, ()
        meta = lease.get("metadata") or {}
        key, version = f"{meta.get('namespace')}/{meta.get('name')}", str(meta.get("resourceVersion"))
        hit = self._parsed.get(key)
        if hit is None or hit[0] != version:
            hit = (version, read_records(lease))
            self._parsed[key] = hit
        return hit[1]


def with_history(history: list[RollbackRecord], record: RollbackRecord) -> list[RollbackRecord]:
    """Add a finished record to the front, replacing an older copy of the same id."""
    return [record, *[r for r in history if r.id != record.id]][:HISTORY_KEEP]


def encode_record(record: RollbackRecord) -> str:
    return json.dumps(record.to_json(), separators=(",", ":"))


def encode_history(history: list[RollbackRecord]) -> str:
    return json.dumps([r.to_json() for r in history], separators=(",", ":"))


def with_records(lease: Obj, record: RollbackRecord | None,
                 history: list[RollbackRecord] | None) -> Obj:
    """A copy of ``lease`` whose annotations carry ``record`` / ``history`` (None: kept).

    Copies only the dicts it changes: the rest (managedFields, ownerReferences...) is
    shared with ``lease``, never mutated; a deep copy of it on every write cost more than
    the write's own JSON."""
    body = dict(lease)
    meta = body["metadata"] = dict(body.get("metadata") or {})
    annotations = meta["annotations"] = dict(meta.get("annotations") or {})
    if record is not None:
        annotations[ANN_RECORD] = encode_record(record)
    if history is not None:
        annotations[ANN_HISTORY] = encode_history(history)
    return body


def lease_body(
    namespace: str, name: str, target: str, identity: str, duration: int,
    now: datetime, record: RollbackRecord, history: list[RollbackRecord] | None,
    previous: Obj | None,
) -> Obj:
    """The Lease we write when acquiring, renewing or updating the record.

    ``history`` None keeps the previous history annotation as it is (it only changes
    when a rollback finishes, and encoding it on every renewal is wasted work)."""
    body = with_records(previous or {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace}, "spec": {},
    }, record, history)
    meta = body["metadata"]
    meta["labels"] = {**(meta.get("labels") or {}),
                      LABEL_MANAGED_BY: MANAGED_BY, LABEL_TARGET: target}
    meta["annotations"].setdefault(ANN_HISTORY, "[]")
    spec = body["spec"] = dict(body.get("spec") or {})
    old_holder = spec.get("holderIdentity") or ""
    if old_holder != identity:
        spec["acquireTime"] = micro_time(now)
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if previous else 0)
    spec["holderIdentity"] = identity
    spec["leaseDurationSeconds"] = duration
    spec["renewTime"] = micro_time(now)
    return body


# -- expiry --------------------------------------------------------------------------------

_Key = tuple[str, str]  # (namespace, name)
_State = tuple[str, str, str]  # (holderIdentity, renewTime, resourceVersion)


def _key(lease: Obj) -> _Key:
    meta = lease.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _state(lease: Obj) -> _State:
    spec = lease.get("spec") or {}
    meta = lease.get("metadata") or {}
    return (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""),
            str(meta.get("resourceVersion") or ""))


class LeaseObservations:
    """When this process last saw each Lease change: client-go's rule for lease expiry.

    Another holder's Lease is judged expired by *local* time only: it stays valid while
    ``observed + leaseDurationSeconds > now``, where ``observed`` is the local monotonic
    time at which this process first saw the Lease in its current state (client-go's
    leaderelection.go keeps ``observedRecord``/``observedTime`` the same way). The
    holder's renewTime is written by the holder's clock; comparing it with ours let a
    replica whose clock ran ahead by more than the lease duration take over a live
    rollback. A Lease this process has never seen change counts as valid for one full
    duration from first sight, so a replica that starts beside a dead holder waits a
    lease duration before taking over. A released Lease (holderIdentity empty) is
    takeable at once.

    One per process, shared by the executor and the TargetWatcher's Lease mirror, so a
    change either of them saw counts for both. Any change of state (a renewal, a new
    holder, any write: a new resourceVersion) restarts the clock; seeing an older copy
    again only restarts it too, which errs towards leaving a holder alone.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._seen: dict[_Key, tuple[_State, float]] = {}

    def observe(self, lease: Obj) -> float:
        """Record the Lease as seen now; the local time it was first seen in this state."""
        key, state = _key(lease), _state(lease)
        seen = self._seen.get(key)
        if seen is not None and seen[0] == state:
            return seen[1]
        now = self.monotonic()
        self._seen[key] = (state, now)
        return now

    def follow(self, mirror: Mirror) -> None:
        """Note each change a Lease watch delivers, so expiry counts from then."""

        def seen(kind: str, obj: Obj | None) -> None:
            if kind == "SYNC":
                for lease in mirror.items.values():
                    self.observe(lease)
            elif obj is not None and kind == "DELETED":
                self.forget(obj)
            elif obj is not None:
                self.observe(obj)

        mirror.subscribe(seen)

    def forget(self, lease: Obj) -> None:
        """The Lease was deleted: a re-created one starts a fresh observation."""
        self._seen.pop(_key(lease), None)

    def expired(self, lease: Obj, default_duration: float = 0) -> bool:
        """True when the Lease is free, or unchanged for a full leaseDurationSeconds of
        local time (the Lease's own duration; ``default_duration`` when it has none)."""
        spec = lease.get("spec") or {}
        if not spec.get("holderIdentity"):
            return True
        first_seen = self.observe(lease)
        duration = float(spec.get("leaseDurationSeconds") or default_duration)
        return first_seen + duration <= self.monotonic()


def lease_expired(lease: Obj, now: datetime) -> bool:
    """True when renewTime + leaseDurationSeconds < now, by this process's clock.

    Only for a Lease naming this process's own identity, whose renewTime our clock
    wrote. Another holder's renewTime comes from its clock, which may be skewed: judge
    those with LeaseObservations (client-go's rule, local observation time)."""
    spec = lease.get("spec") or {}
    if not spec.get("holderIdentity"):
        return True
    renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
    duration = int(spec.get("leaseDurationSeconds") or 0)
    if renewed is None:
        return True
    return renewed + timedelta(seconds=duration) < now


def is_expired(lease: Obj, *, identity: str | None, observations: LeaseObservations,
               now: datetime, duration: float) -> bool:
    """The one expiry rule: a Lease naming ``identity`` by its renewTime (our own clock
    wrote it), any other holder's by local observation; a free Lease is expired."""
    if identity and holder(lease) == identity:
        return lease_expired(lease, now)
    return observations.expired(lease, duration)


# -- the conflict loop ---------------------------------------------------------------------

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
    lease = current if current is not None else await kube.read_lease(namespace, name)
    for _ in range(CONFLICT_ATTEMPTS):
        body = change(lease)
        if body is None:
            return None
        try:
            return await kube.replace_lease(namespace, name, body)
        except KubeError as err:
            if not err.conflict:
                raise
        lease = await kube.read_lease(namespace, name)
    raise RecordError(f"lease {namespace}/{name} kept changing under us")


# -- acquire, renew, release ---------------------------------------------------------------

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


def _written_by_us(lease: Obj, body: Obj, identity: str) -> bool:
    """Whether ``lease`` is our own write of ``body`` (its answer lost, a re-send got 409)."""
    return holder(lease) == identity and (
        _annotation(lease, ANN_RECORD) == body["metadata"]["annotations"][ANN_RECORD]
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
