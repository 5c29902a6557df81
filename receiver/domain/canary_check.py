"""Before acting, "is it really the canary?": pure judgement of what Prometheus said.

The intake asks Prometheus for the alert's own expression evaluated for the stable
version (bounded to prometheus.decision_wait_seconds) and passes the answer here as a
StableCheck; ``before_acting`` turns a roll_back decision into ``not_canary`` when the
stable is just as sick, and otherwise only adds to the reason what was (or could not
be) checked. Anything short of a clear "the stable crossed too" keeps today's
behaviour: a rollback never waits on, nor is stopped by, a monitoring failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from receiver.domain.decisions import Decision, DecisionKind
from receiver.domain.readings import Reading, Verdict

if TYPE_CHECKING:
    from receiver.domain.settings import Settings, Target


#: The comparisons a reading can be judged by (readings.judge; ``==`` has no healthy side).
JUDGED_OPS = frozenset({">", ">=", "<", "<="})


@dataclass(frozen=True, slots=True)
class StableCheck:
    """What Prometheus said about each version, or why it said nothing.

    ``skipped`` set: no usable reading (timeout, error, unparseable generatorURL); the
    readings are then None. ``stable`` NO_SERIES / NO_VALUE also leave the decision as it is.
    """

    stable: Reading | None = None
    canary: Reading | None = None
    skipped: str | None = None


def last_replicas_change(deployment: Mapping[str, Any] | None) -> datetime | None:
    """When the Deployment's replica count was last set: the newest managedFields entry owning
    ``spec.replicas`` (``kubectl scale``, an apply, the receiver's own scale patch).

    managedFields is what the API server keeps for every object, with no annotation to
    install; its ``time`` is the manager's last change to any of its fields, so an entry
    that also owns other fields may be later than the replica change itself (an alert is
    then named "older" too eagerly, never too late). None when no entry says.
    """
    found: list[datetime] = []
    for entry in ((deployment or {}).get("metadata") or {}).get("managedFields") or ():
        spec = ((entry or {}).get("fieldsV1") or {}).get("f:spec") or {}
        if "f:replicas" in spec and entry.get("time"):
            try:
                found.append(datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")))
            except ValueError:
                continue
    return max(found) if found else None


def _started_before(decision: Decision, phase_started_at: datetime | None) -> bool:
    lead = decision.alerts[0] if decision.alerts else None
    return lead is not None and phase_started_at is not None and lead.starts_at < phase_started_at


def before_acting(
    decision: Decision,
    target: Target,
    settings: Settings,
    check: StableCheck | None,
    *,
    phase_started_at: datetime | None = None,
) -> Decision:
    """The decision after the pre-checks; only ROLL_BACK decisions are ever changed.

    Order: an alert older than the canary's last replica change (when such alerts may
    not trigger) comes first, since the comparison with the stable is about the current
    split; then the stable's reading.
    """
    if decision.kind is not DecisionKind.ROLL_BACK:
        return decision
    notes: list[str] = []
    if _started_before(decision, phase_started_at):
        assert phase_started_at is not None
        when = phase_started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        clause = (f"the alert started before {target.canary} last changed replicas ({when}), "
                  f"so it may be about the previous split")
        if not settings.alerts_before_phase_may_trigger:
            return replace(decision, kind=DecisionKind.NO_RULE_MATCHED,
                           reason=f"no rollback for {target.name}: {clause} and "
                                  f"settings.alerts_before_phase_may_trigger is false; was: {decision.reason}",
                           details={**decision.details, "before_phase": "true"})
        notes.append(clause)
    if check is None:
        pass
    elif check.skipped is not None:
        notes.append(f"not compared with the stable: {check.skipped}")
    elif check.stable is not None:
        s, c = check.stable, check.canary
        unit = decision.unit
        v = target.versions
        if s.verdict is Verdict.CROSSED:
            canary = c.describe(unit) if c is not None else "not read"
            return replace(
                decision, kind=DecisionKind.NOT_CANARY,
                reason=(f"not rolling {target.name} back: the stable is as sick as the canary, so rolling "
                        f"back would not help ({decision.alertname or decision.rule} {v.stable}: "
                        f"{s.describe(unit)}, {v.canary}: {canary}); was: {decision.reason}"),
                details={**decision.details, "stable_value": s.describe(unit), "canary_value": canary,
                         **({"stable_number": repr(s.value)} if s.value is not None else {}),
                         **({"canary_number": repr(c.value)} if c is not None and c.value is not None else {})},
            )
        if s.verdict is Verdict.CLEAR:
            notes.append(f"the stable {v.stable} is healthy ({s.describe(unit)})")
        else:
            notes.append(f"not compared with the stable: {v.stable} has {s.describe(unit)}")
    if not notes:
        return decision
    return replace(decision, reason=f"{decision.reason}; {'; '.join(notes)}")
