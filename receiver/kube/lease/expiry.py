"""When a Lease has expired: our own by our clock, another holder's by local observation."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from receiver.kube import Mirror, Obj, parse_time
from receiver.kube.lease.codec import holder

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
