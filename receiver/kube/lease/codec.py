"""The Lease's names and labels, and the record codec: the rollback's record and history
kept in its annotations, read back by any replica (GET /rollbacks, resume, fights)."""

from __future__ import annotations

import json
from datetime import datetime

from receiver.domain.rollback import RollbackRecord
from receiver.domain.settings import Config, Target
from receiver.kube import Obj, micro_time

DOMAIN = "rollback-receiver.io"
ANN_RECORD = f"{DOMAIN}/record"
ANN_HISTORY = f"{DOMAIN}/history"
LABEL_TARGET = f"{DOMAIN}/target"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "rollback-receiver"
LEASE_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
HISTORY_KEEP = 10


class RecordError(Exception):
    """The rollback's record could not be written to or read from the cluster."""


def lease_name(target: Target) -> str:
    return f"rollback-{target.name}"


def lease_namespace(config: Config, target: Target) -> str:
    return config.settings.lease_namespace or target.namespace


def holder(lease: Obj | None) -> str:
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


Records = tuple[RollbackRecord | None, tuple[RollbackRecord, ...]]


def annotation(lease: Obj, key: str) -> str | None:
    """One of the Lease's annotations, or None when absent or empty."""
    value = ((lease.get("metadata") or {}).get("annotations") or {}).get(key)
    return str(value) if value else None


def record_from_lease(lease: Obj | None) -> RollbackRecord | None:
    """The record held in a Lease's annotation, or None (RecordError if unreadable)."""
    if not lease:
        return None
    text = annotation(lease, ANN_RECORD)
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
    text = annotation(lease, ANN_HISTORY)
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
