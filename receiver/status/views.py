"""Status and history of each target, built from the cluster's own objects.

Everything here is read from what the cluster holds (the two Deployments, the target's
Lease with its record and capped history, and the shared state ConfigMap with the
run-time mutes and the blast-radius breaker), never from a receiver's memory,
so the views work with no receiver running and are the same from any replica.

The shapes below are the JSON/YAML contract of `receiver status -o json`,
`receiver history -o json`, GET /targets and GET /rollbacks: fields are only ever
added, never renamed or removed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from receiver.domain.decisions import MuteScope, applied_mute
from receiver.domain.phases import phase_of
from receiver.domain.rollback import RollbackRecord
from receiver.domain.settings import Config, Target
from receiver.domain.shared_state import EMPTY, SharedState, parse_state
from receiver.kube import Kube, KubeError, Mirror, Obj
from receiver.kube.lease import (
    HISTORY_KEEP,
    LEASE_SELECTOR,
    RecordError,
    history_from_lease,
    lease_name,
    lease_namespace,
    record_from_lease,
)
from receiver.kube.shared_state import STATE_NAME

#: Finished rollbacks kept per target in its Lease (oldest dropped), for the docs.
KEPT_PER_TARGET = HISTORY_KEEP
#: What recovery says until the receiver measures it (Prometheus, a later change).
NOT_MEASURED = "not measured"

Key = tuple[str, str]  # (namespace, name)


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PhaseView(_View):
    """The rollout phase derived from the live split (never stored)."""

    key: str = Field(description="week-1 .. week-4, or not_started / between / complete")
    text: str = Field(description='As people say it: "week 1", "between week 1 and week 2"')
    canary_replicas: int
    full_count: int


class DeploymentView(_View):
    """One Deployment of the pair: spec replicas and Ready pods (None when it is missing)."""

    name: str
    exists: bool
    replicas: int | None = None
    ready: int | None = None


class MuteView(_View):
    """A mute in force: whose, why, until when, and where it comes from."""

    scope: MuteScope
    source: str = Field(description='"config" (the config file) or "runtime" (`receiver mute`, HTTP, Slack)')
    by: str
    reason: str
    until: datetime | None = Field(description="null = until removed")


class RunningView(_View):
    """The rollback running on the target, as its Lease record shows it."""

    id: str
    phase: str
    step: str | None = Field(description="the last step taken, e.g. scale-canary")
    step_message: str | None
    started_at: datetime
    trigger: str
    reason: str
    holder: str | None = Field(description="the replica holding the target's Lease")


class OutcomeView(_View):
    """The last finished rollback of the target."""

    id: str
    outcome: str = Field(description="succeeded | failed")
    finished_at: datetime | None
    reason: str
    dry_run: bool


class BreakerView(_View):
    """The blast-radius breaker (one for all targets, kept in the cluster): open = no
    automatic rollback until a person closes it."""

    state: str = "closed"
    opened_at: datetime | None = None
    targets: list[str] = Field(default_factory=list, description="the targets whose rollbacks tripped it")
    reason: str = ""


class TargetStatus(_View):
    name: str
    state_problem: str | None = Field(default=None, description="the shared state (run-time mutes, breaker) "
                                      "could not be read: mute and breaker are unknown, not absent")
    namespace: str
    phase: PhaseView | None = Field(description="null when the canary cannot be read")
    canary: DeploymentView
    stable: DeploymentView
    mute: MuteView | None
    rollback: RunningView | None
    last: OutcomeView | None
    breaker: BreakerView


class StatusView(_View):
    """`receiver status -o json` and GET /targets."""

    generated_at: datetime
    targets: list[TargetStatus]


class StepView(_View):
    name: str
    message: str
    at: datetime
    duration_seconds: float | None
    ok: bool
    warning: bool


class RecoveryView(_View):
    """Did the service recover after the rollback? Not measured until Prometheus is read."""

    outcome: str = NOT_MEASURED


class HistoryEntry(_View):
    kind: Literal["rollback"] = "rollback"  # promotions will be added as another kind
    id: str
    target: str
    namespace: str
    phase: str = Field(description="the record's phase: waiting .. succeeded | failed")
    outcome: str = Field(description="succeeded | failed | running")
    trigger: str = Field(description="alert | manual")
    alert: str | None
    rule: str | None
    reason: str = Field(description="the decision's reason, e.g. error-rate: 7.2 % > 5 %")
    requested_by: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    error: str | None
    dry_run: bool
    recovery: RecoveryView
    steps: list[StepView]
    rollout_phase: str | None = Field(
        default=None, description="the target's rollout phase when decided, e.g. week 1 (canary 1 of 5)")


class HistoryView(_View):
    """`receiver history -o json` and GET /rollbacks: newest first."""

    target: str | None
    since: datetime | None
    kept_per_target: int = KEPT_PER_TARGET
    rollbacks: list[HistoryEntry]


# -- the cluster's objects ----------------------------------------------------------


class ClusterObjects:
    """The Deployments and Leases the views are built from, by (namespace, name), and the
    shared state (run-time mutes, the breaker)."""

    def __init__(self, deployments: Mapping[Key, Obj], leases: Mapping[Key, Obj],
                 state: SharedState = EMPTY) -> None:
        self.deployments = deployments
        self.leases = leases
        self.state = state

    def lease(self, config: Config, target: Target) -> Obj | None:
        return self.leases.get((lease_namespace(config, target), lease_name(target)))


def namespaces(config: Config) -> tuple[list[str], list[str]]:
    """(deployment namespaces, lease namespaces) the configured targets live in."""
    return (sorted({t.namespace for t in config.targets}),
            sorted({lease_namespace(config, t) for t in config.targets}))


def _by_key(ns: str, items: Iterable[Obj]) -> dict[Key, Obj]:
    return {(ns, i["metadata"]["name"]): i for i in items}


def _state(items: Iterable[Obj]) -> SharedState:
    found = next(iter(items), None)
    return parse_state((found or {}).get("data")) if found is not None else EMPTY


async def read_state(kube: Kube, config: Config) -> SharedState:
    """The shared state ConfigMap (absent = no run-time mutes, breaker closed); a state the
    receiver's identity may not read is said, not taken for "nothing muted"."""
    try:
        body = await kube.list("configmaps", config.state_namespace, field_selector=f"metadata.name={STATE_NAME}")
    except KubeError as e:
        if e.status in (401, 403):
            return SharedState(problems=(f"cannot read {config.state_namespace}/{STATE_NAME}: {e}",))
        raise
    return _state(body.get("items") or [])


async def read_objects(kube: Kube, config: Config) -> ClusterObjects:
    """One list of Deployments per target namespace and of Leases per lease namespace,
    and the shared state."""
    deploy_ns, lease_ns = namespaces(config)
    deploys = await asyncio.gather(*(kube.list("deployments", ns) for ns in deploy_ns))
    leases = await asyncio.gather(*(kube.list("leases", ns, label_selector=LEASE_SELECTOR)
                                    for ns in lease_ns))
    state = await read_state(kube, config)
    d: dict[Key, Obj] = {}
    for ns, body in zip(deploy_ns, deploys, strict=True):
        d.update(_by_key(ns, body.get("items") or []))
    le: dict[Key, Obj] = {}
    for ns, body in zip(lease_ns, leases, strict=True):
        le.update(_by_key(ns, body.get("items") or []))
    return ClusterObjects(d, le, state)


class LiveObjects:
    """ClusterObjects kept current by list+watch (Mirror), for ``--watch``."""

    def __init__(self, kube: Kube, config: Config) -> None:
        deploy_ns, lease_ns = namespaces(config)
        self._deploys = {ns: Mirror(kube, "deployments", ns) for ns in deploy_ns}
        self._leases = {ns: Mirror(kube, "leases", ns, label_selector=LEASE_SELECTOR) for ns in lease_ns}
        self._state = Mirror(kube, "configmaps", config.state_namespace, field_selector=f"metadata.name={STATE_NAME}")
        self.changed = asyncio.Event()
        for m in self._mirrors():
            m.subscribe(lambda _type, _obj: self.changed.set())

    def _mirrors(self) -> list[Mirror]:
        return [*self._deploys.values(), *self._leases.values(), self._state]

    async def start(self) -> None:
        """Start every watch and wait for its first list (KubeError if refused)."""
        for m in self._mirrors():
            m.start()
        for m in self._mirrors():
            await m.ready()

    async def stop(self) -> None:
        for m in self._mirrors():
            await m.stop()

    def problem(self) -> str | None:
        return next((p for m in self._mirrors() if (p := m.problem()) is not None), None)

    def snapshot(self) -> ClusterObjects:
        d: dict[Key, Obj] = {}
        for ns, m in self._deploys.items():
            d.update(_by_key(ns, m.items.values()))
        le: dict[Key, Obj] = {}
        for ns, m in self._leases.items():
            le.update(_by_key(ns, m.items.values()))
        return ClusterObjects(d, le, _state(self._state.items.values()))


# -- status ---------------------------------------------------------------------------


def _deployment(ns: str, name: str, objects: ClusterObjects) -> DeploymentView:
    obj = objects.deployments.get((ns, name))
    if obj is None:
        return DeploymentView(name=name, exists=False)
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    return DeploymentView(name=name, exists=True, replicas=int(spec.get("replicas", 1)),
                          ready=int(st.get("readyReplicas") or 0))


def mute_of(config: Config, target: Target, now: datetime, state: SharedState = EMPTY) -> MuteView | None:
    """The mute in force for the target, by the one rule decisions use (domain.decisions)."""
    m = applied_mute(config.settings, target, now, state)
    if m is None:
        return None
    return MuteView(scope=m.scope, source=m.source.value, by=m.by, reason=m.reason, until=m.until)


def records_of(lease: Obj | None) -> tuple[RollbackRecord | None, list[RollbackRecord]]:
    """The current record (None if absent or unreadable) and the kept finished ones."""
    try:
        current = record_from_lease(lease)
    except RecordError:
        current = None
    return current, history_from_lease(lease)


def breaker_of(state: SharedState) -> BreakerView:
    if state.problems:  # unreadable: never shown as "closed"
        return BreakerView(state="unknown", reason="; ".join(state.problems))
    b = state.breaker
    return BreakerView(state=b.state, opened_at=b.opened_at, targets=list(b.targets), reason=b.reason) \
        if b.is_open else BreakerView()


def target_status(config: Config, target: Target, objects: ClusterObjects, now: datetime) -> TargetStatus:
    canary = _deployment(target.namespace, target.canary, objects)
    stable = _deployment(target.namespace, target.stable, objects)
    phase = None
    if canary.replicas is not None:
        p = phase_of(canary.replicas, target.replicas, config.phases_of(target))
        phase = PhaseView(key=p.key, text=p.text, canary_replicas=p.canary_replicas, full_count=p.full_count)
    lease = objects.lease(config, target)
    current, history = records_of(lease)
    running = None
    if current is not None and not current.phase.finished:
        last_step = current.steps[-1] if current.steps else None
        holder = str(((lease or {}).get("spec") or {}).get("holderIdentity") or "") or None
        running = RunningView(id=current.id, phase=current.phase.value,
                              step=last_step.name if last_step else None,
                              step_message=last_step.message if last_step else None,
                              started_at=current.started_at, trigger=current.trigger,
                              reason=current.reason, holder=holder)
    finished = [r for r in ([current] if current else []) + history if r.phase.finished]
    finished.sort(key=lambda r: r.finished_at or r.started_at, reverse=True)
    last = None
    if finished:
        r = finished[0]
        last = OutcomeView(id=r.id, outcome=r.phase.value, finished_at=r.finished_at, reason=r.reason,
                           dry_run=r.dry_run)
    return TargetStatus(name=target.name, namespace=target.namespace, phase=phase, canary=canary,
                        stable=stable, mute=mute_of(config, target, now, objects.state), rollback=running,
                        last=last, breaker=breaker_of(objects.state),
                        state_problem="; ".join(objects.state.problems) or None)


def build_status(config: Config, objects: ClusterObjects, now: datetime, target: str | None = None) -> StatusView:
    """Every configured target's status (or one's: ``target``, already checked to exist)."""
    targets = [t for t in config.targets if target is None or t.name == target]
    return StatusView(generated_at=now,
                      targets=[target_status(config, t, objects, now) for t in targets])


# -- history --------------------------------------------------------------------------


def lease_records(config: Config, objects: ClusterObjects) -> list[RollbackRecord]:
    """Every record the targets' Leases hold: the current one and the kept history."""
    out: list[RollbackRecord] = []
    for t in config.targets:
        current, history = records_of(objects.lease(config, t))
        out += ([current] if current else []) + history
    return out


def history_entry(r: RollbackRecord) -> HistoryEntry:
    return HistoryEntry(
        id=r.id, target=r.target, namespace=r.namespace, phase=r.phase.value,
        outcome=r.phase.value if r.phase.finished else "running", trigger=r.trigger,
        alert=r.alertname, rule=r.rule, reason=r.reason, requested_by=r.requested_by,
        started_at=r.started_at, finished_at=r.finished_at, duration_seconds=r.duration_seconds,
        error=r.error, dry_run=r.dry_run, recovery=RecoveryView(), rollout_phase=r.rollout_phase,
        steps=[StepView(name=s.name, message=s.message, at=s.at, duration_seconds=s.duration_seconds,
                        ok=s.ok, warning=s.warning) for s in r.steps],
    )


def build_history(records: Iterable[RollbackRecord], *, target: str | None = None,
                  since: datetime | None = None) -> HistoryView:
    """Rollbacks started at or after ``since`` (running ones always), newest first,
    one entry per id (the freshest copy: the one that finished, else the latest step)."""
    by_id: dict[str, RollbackRecord] = {}
    for r in records:
        old = by_id.get(r.id)
        if old is None or (r.phase.finished, len(r.steps)) > (old.phase.finished, len(old.steps)):
            by_id[r.id] = r
    chosen = [r for r in by_id.values()
              if (target is None or r.target == target)
              and (since is None or r.started_at >= since or not r.phase.finished)]
    chosen.sort(key=lambda r: r.started_at, reverse=True)
    return HistoryView(target=target, since=since, rollbacks=[history_entry(r) for r in chosen])


# -- input ----------------------------------------------------------------------------

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime) -> datetime:
    """``--since`` / ``?since=``: a duration back from now (30m, 24h, 7d, 2w) or an
    RFC 3339 time with a zone. ValueError saying what is accepted otherwise."""
    if m := _SINCE.match(text):
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError(f"cannot read since {text!r}: give a duration (30m, 24h, 7d, 2w) "
                         "or a time with a zone (2026-12-01T08:00:00Z)")
    if when > now:
        raise ValueError(f"since {text!r} is in the future")
    return when.astimezone(UTC)


def unknown_target(config: Config, name: str | None) -> str | None:
    """The error for a target name the config does not have (None when fine)."""
    if name is None or config.target(name) is not None:
        return None
    names = ", ".join(t.name for t in config.targets) or "none"
    return f"unknown target {name!r}; configured: {names}"
