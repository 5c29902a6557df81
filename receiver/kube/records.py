"""Where a rollback's record lives in the cluster, and how it is read back.

Each target has a Lease (its lock); its annotations carry the current record (JSON of
RollbackRecord) and the last few finished ones, so any replica can answer GET
/rollbacks, resume a half-done rollback, or count recent rollbacks for fight detection.
Each Deployment also carries a short ``last-rollback`` annotation for people using
kubectl.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from receiver.domain.rollback import Phase, RollbackRecord
from receiver.domain.settings import Config, Target
from receiver.kube.gateway import Obj, parse_time

DOMAIN = "rollback-receiver.io"
ANN_RECORD = f"{DOMAIN}/record"
ANN_HISTORY = f"{DOMAIN}/history"
ANN_LAST = f"{DOMAIN}/last-rollback"
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


def record_from_lease(lease: Obj | None) -> RollbackRecord | None:
    """The record held in a Lease's annotation, or None (RecordError if unreadable)."""
    if not lease:
        return None
    text = ((lease.get("metadata") or {}).get("annotations") or {}).get(ANN_RECORD)
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
    text = ((lease.get("metadata") or {}).get("annotations") or {}).get(ANN_HISTORY)
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


def with_history(history: list[RollbackRecord], record: RollbackRecord) -> list[RollbackRecord]:
    """Add a finished record to the front, replacing an older copy of the same id."""
    return [record, *[r for r in history if r.id != record.id]][:HISTORY_KEEP]


def encode_record(record: RollbackRecord) -> str:
    return json.dumps(record.to_json(), separators=(",", ":"))


def encode_history(history: list[RollbackRecord]) -> str:
    return json.dumps([r.to_json() for r in history], separators=(",", ":"))


def holder(lease: Obj | None) -> str:
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


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


def last_rollback_annotation(record: RollbackRecord) -> str:
    """The short JSON kept on each Deployment: when, why, which alert, outcome, id."""
    body: dict[str, Any] = {
        "id": record.id,
        "when": (record.finished_at or record.started_at).isoformat(),
        "why": record.reason,
        "alert": record.alertname,
        "fingerprints": list(record.fingerprints),
        "rule": record.rule,
        "trigger": record.trigger,
        "outcome": record.phase.value,
        "order": record.order,
    }
    if record.error:
        body["error"] = record.error
    return json.dumps(body, separators=(",", ":"))


def recent_finish_times(records: list[RollbackRecord]) -> tuple[datetime, ...]:
    """When each real (not dry-run) rollback finished, newest first."""
    times = {
        r.id: r.finished_at
        for r in records
        if r.phase in (Phase.SUCCEEDED, Phase.FAILED) and not r.dry_run and r.finished_at
    }
    return tuple(sorted((t for t in times.values() if t), reverse=True))
