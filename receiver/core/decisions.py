"""What to do about each target for one webhook: pure, with a reason for every outcome.

decide(payload, config, states, now) is the whole of the receiver's judgement. It does
no I/O: what is known of each target (replica counts, a running rollback) is passed in
as TargetState, kept current elsewhere by watching the Deployments and Leases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receiver.config import Config
    from receiver.core.alerts import Alert, WebhookPayload


class DecisionKind(StrEnum):
    """Outcome of deciding; the value doubles as a metric label."""

    ROLL_BACK = "roll_back"
    MUTED = "muted"
    DRY_RUN = "dry_run"
    ALREADY_ROLLED_BACK = "already_rolled_back"
    IN_PROGRESS = "in_progress"
    NO_RULE_MATCHED = "no_rule_matched"
    RESOLVED = "resolved"
    DISABLED = "disabled"
    HALTED = "halted"  # fight detection: too many rollbacks of this target within an hour


@dataclass(frozen=True, slots=True)
class TargetState:
    """What the receiver currently knows of a target, from watches (None = unknown)."""

    canary_replicas: int | None = None
    stable_replicas: int | None = None
    stable_ready: int | None = None
    stable_exists: bool | None = None
    rollback_running: str | None = None  # rollback id held in the target's Lease
    recent_rollbacks: tuple[datetime, ...] = ()  # finished rollbacks, for fight detection
    last_rollback_finished: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """One target's decision for one webhook delivery."""

    target: str
    kind: DecisionKind
    reason: str  # a sentence a person reads in Slack or the HTTP response
    rule: str | None = None
    alerts: tuple[Alert, ...] = ()
    value: float | None = None  # the triggering alert's value, when the rule has a threshold
    threshold: float | None = None
    muted_by: str | None = None
    muted_until: datetime | None = None
    group_key: str = ""
    external_url: str = ""
    details: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(a.fingerprint for a in self.alerts)

    def summary(self) -> dict[str, object]:
        """JSON-ready summary for the webhook response."""
        return {
            "target": self.target,
            "decision": self.kind.value,
            "reason": self.reason,
            "rule": self.rule,
            "fingerprints": list(self.fingerprints),
        }


def decide(
    payload: WebhookPayload,
    config: Config,
    states: dict[str, TargetState],
    now: datetime,
) -> list[Decision]:
    """Return one Decision per configured target the payload's alerts belong to."""
    raise NotImplementedError  # implemented in issue 3
