"""A rollback's record: its id, steps and outcome, as data the notifier and API render.

The executor appends steps as it works; messages.py renders the same record into Slack
blocks; the record is serialised into the target's Lease annotation so a restarted
receiver (or any replica answering GET /rollbacks) sees the same timeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

KIND_ROLLBACK = "rollback"
KIND_PROMOTION = "promotion"


class Phase(StrEnum):
    """Where a rollback is; shown on the Slack parent message."""

    WAITING = "waiting"  # for a free slot under max_concurrent_rollbacks
    STARTED = "started"
    SCALING = "scaling"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the timeline: what happened, when, and how long it took."""

    name: str  # e.g. "preflight", "order", "scale-canary", "scale-stable", "verify", "fight"
    message: str  # human sentence, e.g. "finance-service-v2 scaled 1 -> 0"
    at: datetime
    duration_seconds: float | None = None
    ok: bool = True
    warning: bool = False


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress snapshot: canary 1 -> 0, stable 4/5 -> 5/5 ready."""

    canary_replicas: int | None = None
    canary_pods: int | None = None
    stable_replicas: int | None = None
    stable_ready: int | None = None
    stable_desired: int | None = None
    not_ready: tuple[str, ...] = ()  # "finance-service-v1-abc: CrashLoopBackOff (restarts 3)"


class RecoveryOutcome(StrEnum):
    """Did taking the canary out help? (runbook step 4, read from Prometheus)."""

    WATCHING = "watching"  # the metric is being watched (or will be once the rollback is verified)
    RECOVERED = "recovered"  # back on the healthy side of the threshold for the whole window
    NOT_RECOVERED = "not_recovered"  # still crossed at the end: the canary was probably not the cause
    UNKNOWN = "unknown"  # Prometheus could not answer, or the expression cannot be judged

    @property
    def finished(self) -> bool:
        return self is not RecoveryOutcome.WATCHING


@dataclass(frozen=True, slots=True)
class Recovery:
    """The recovery watch's state and outcome, kept in the record (and so in the Lease)."""

    outcome: RecoveryOutcome
    message: str = ""  # "recovered: error rate 0.4 % for 5 min, 6 min after the alert"
    alert_started_at: datetime | None = None
    window_seconds: float | None = None
    value: float | None = None  # the last value read for the stable version
    checked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "message": self.message,
                "alert_started_at": self.alert_started_at.isoformat() if self.alert_started_at else None,
                "window_seconds": self.window_seconds, "value": self.value,
                "checked_at": self.checked_at.isoformat() if self.checked_at else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recovery:
        def when(key: str) -> datetime | None:
            return datetime.fromisoformat(data[key]) if data.get(key) else None
        return cls(RecoveryOutcome(data["outcome"]), str(data.get("message") or ""), when("alert_started_at"),
                   data.get("window_seconds"), data.get("value"), when("checked_at"))


@dataclass(frozen=True, slots=True)
class Before:
    """The Deployments as the first pre-flight read them: what the parent message shows as
    v1 and v2 images and as replicas before -> after. Kept from the first pre-flight, so a
    resumed run (which reads the already-scaled Deployments) does not overwrite it."""

    stable_replicas: int | None = None
    canary_replicas: int | None = None  # None: the canary Deployment did not exist
    stable_images: tuple[str, ...] = ()  # spec.template's containers, in order
    canary_images: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"stable_replicas": self.stable_replicas, "canary_replicas": self.canary_replicas,
                "stable_images": list(self.stable_images), "canary_images": list(self.canary_images)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Before:
        """Unknown keys are skipped (a newer receiver's record), missing ones take defaults."""
        return cls(data.get("stable_replicas"), data.get("canary_replicas"),
                   tuple(str(i) for i in data.get("stable_images") or ()),
                   tuple(str(i) for i in data.get("canary_images") or ()))


@dataclass(frozen=True, slots=True)
class RollbackRecord:
    """Everything known about one rollback. Immutable: each change makes a new record."""

    id: str
    target: str
    namespace: str
    stable: str
    canary: str
    replicas: int
    phase: Phase
    started_at: datetime
    trigger: str  # "alert" or "manual"
    reason: str  # why: rule and value, e.g. "error-rate: 0.072 > 0.05"
    rule: str | None = None
    alertname: str | None = None
    fingerprints: tuple[str, ...] = ()
    value: float | None = None
    threshold: float | None = None
    unit: str = "none"
    requested_by: str | None = None  # who ran `receiver rollback`
    order: str | None = None  # "canary-first" / "stable-first" as taken
    steps: tuple[Step, ...] = ()
    progress: Progress = field(default_factory=Progress)
    finished_at: datetime | None = None
    error: str | None = None
    generator_url: str | None = None
    external_url: str | None = None
    slack_channel: str | None = None  # channel id of the parent message
    slack_ts: str | None = None  # ts of the parent message
    dry_run: bool = False
    #: The target's rollout phase when the alert was decided, as people read it:
    #: "week 1 (canary 1 of 5)"; None for manual rollbacks and records written before it existed.
    rollout_phase: str | None = None
    recovery: Recovery | None = None  # None: Prometheus not configured, or a manual rollback
    kind: str = "rollback"  # "rollback" or "promotion": one record shape, one Lease, one thread
    #: The Deployments before the change (images, replicas); None until the pre-flight read them.
    before: Before | None = None
    #: When the triggering alert started firing (its startsAt): the timings on the parent start there.
    alert_started_at: datetime | None = None
    #: The alert's own ``runbook_url`` annotation; the target's runbook_url is the fallback.
    runbook_url: str | None = None

    @property
    def is_promotion(self) -> bool:
        return self.kind == KIND_PROMOTION

    def with_step(self, step: Step) -> RollbackRecord:
        return replace(self, steps=(*self.steps, step))

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as RFC 3339), the inverse of from_json.

        Written out field by field: it runs on every Lease write, and dataclasses.asdict
        deep-copies every value first (most of a rollback's CPU with 200 at once)."""
        p = self.progress
        return {
            "id": self.id,
            "target": self.target,
            "namespace": self.namespace,
            "stable": self.stable,
            "canary": self.canary,
            "replicas": self.replicas,
            "phase": self.phase,
            "started_at": self.started_at.isoformat(),
            "trigger": self.trigger,
            "reason": self.reason,
            "rule": self.rule,
            "alertname": self.alertname,
            "fingerprints": list(self.fingerprints),
            "value": self.value,
            "threshold": self.threshold,
            "unit": self.unit,
            "requested_by": self.requested_by,
            "order": self.order,
            "steps": [
                {"name": s.name, "message": s.message, "at": s.at.isoformat(),
                 "duration_seconds": s.duration_seconds, "ok": s.ok, "warning": s.warning}
                for s in self.steps
            ],
            "progress": {
                "canary_replicas": p.canary_replicas,
                "canary_pods": p.canary_pods,
                "stable_replicas": p.stable_replicas,
                "stable_ready": p.stable_ready,
                "stable_desired": p.stable_desired,
                "not_ready": list(p.not_ready),
            },
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": self.error,
            "generator_url": self.generator_url,
            "external_url": self.external_url,
            "slack_channel": self.slack_channel,
            "slack_ts": self.slack_ts,
            "dry_run": self.dry_run,
            "rollout_phase": self.rollout_phase,
            # only when set: a record without it reads the same in older receivers
            **({"recovery": self.recovery.to_json()} if self.recovery is not None else {}),
            "kind": self.kind,
            # only when set, like recovery: older receivers skip them, older records lack them
            **({"before": self.before.to_json()} if self.before is not None else {}),
            **({"alert_started_at": self.alert_started_at.isoformat()} if self.alert_started_at else {}),
            **({"runbook_url": self.runbook_url} if self.runbook_url else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RollbackRecord:
        """The inverse of to_json. Keys this version does not know are skipped and missing
        optional ones take their defaults, so replicas of different versions (a rolling
        upgrade) read each other's records in the Lease."""
        d = {k: v for k, v in data.items() if k in _FIELDS}
        for k in ("started_at", "finished_at", "alert_started_at"):
            if d.get(k):
                d[k] = datetime.fromisoformat(d[k])
        d["phase"] = Phase(d["phase"])
        d["fingerprints"] = tuple(d.get("fingerprints", ()))
        d["steps"] = tuple(
            Step(**{**s, "at": datetime.fromisoformat(s["at"])}) for s in d.get("steps", ())
        )
        p = dict(d.get("progress") or {})
        p["not_ready"] = tuple(p.get("not_ready", ()))
        d["progress"] = Progress(**p)
        if d.get("recovery") is not None:
            d["recovery"] = Recovery.from_json(d["recovery"])
        if d.get("before") is not None:
            d["before"] = Before.from_json(d["before"])
        d["kind"] = d.get("kind") or KIND_ROLLBACK  # records written before promotions existed
        if d["kind"] not in (KIND_ROLLBACK, KIND_PROMOTION):
            raise ValueError(f"unknown record kind {d['kind']!r}")
        return cls(**d)


_FIELDS = frozenset(f.name for f in fields(RollbackRecord))

OnChange = Callable[[RollbackRecord, Step | None], None]
"""Told of every change to a rollback (and the step that made it): the notifier's door."""
