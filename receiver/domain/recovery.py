"""Runbook step 4, "watch for error rate normalization", as a pure tracker.

The watcher (receiver.rollback.recovery) feeds it one reading of the alert's metric
for the stable version at a time; RecoveryTracker says when that is enough:

- recovered: every reading for a full ``window`` was on the healthy side (CLEAR);
- NOT recovered: at the deadline the last reading still crossed the threshold;
- unknown: at the deadline nothing better can be said (Prometheus did not answer, no
  series, NaN only, or healthy for less than the window), with the reason.

A reading that is not CLEAR (crossed, no series, NaN, an error) restarts the healthy
stretch: health is only confirmed when it was seen without a gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from receiver.domain.messages import duration
from receiver.domain.readings import Reading, Verdict
from receiver.domain.rollback import Recovery, RecoveryOutcome
from receiver.domain.units import format_value


@dataclass
class RecoveryTracker:
    """What the watch has seen so far; ``observe`` / ``failed`` per poll, ``conclude`` at the deadline."""

    subject: str  # "HighErrorRate": what is watched, as people know it
    where: str  # "finance-service-v1": whose metric (the stable's)
    unit: str
    window: float
    alert_started_at: datetime | None = None
    healthy_since: datetime | None = None
    last: Reading | None = None
    last_error: str | None = None

    def _recovery(self, outcome: RecoveryOutcome, message: str, now: datetime) -> Recovery:
        value = self.last.value if self.last is not None else None
        return Recovery(outcome, message, self.alert_started_at, self.window, value, now)

    def observe(self, reading: Reading, now: datetime) -> Recovery | None:
        """A reading at ``now``; RECOVERED once CLEAR for the whole window, else None."""
        self.last, self.last_error = reading, None
        if reading.verdict is not Verdict.CLEAR:
            self.healthy_since = None
            return None
        if self.healthy_since is None:
            self.healthy_since = now
        if (now - self.healthy_since).total_seconds() < self.window:
            return None
        since = (f", {duration((self.healthy_since - self.alert_started_at).total_seconds())} after the alert"
                 if self.alert_started_at is not None else "")
        return self._recovery(
            RecoveryOutcome.RECOVERED,
            f"recovered: {self.subject} {format_value(reading.value, self.unit)} on {self.where} "
            f"for {duration(self.window)}{since}",
            now,
        )

    def failed(self, reason: str) -> None:
        """Prometheus gave no answer (after its retries): the healthy stretch is broken."""
        self.last_error = reason
        self.healthy_since = None

    def recovered_after(self) -> float | None:
        """Seconds from the alert starting to the metric back under the threshold."""
        if self.healthy_since is None or self.alert_started_at is None:
            return None
        return max(0.0, (self.healthy_since - self.alert_started_at).total_seconds())

    def conclude(self, now: datetime) -> Recovery:
        """The outcome at the end of the watch, when ``observe`` never said recovered."""
        last = self.last
        if self.last_error is not None:
            return self._recovery(RecoveryOutcome.UNKNOWN,
                                  f"unknown: Prometheus could not answer: {self.last_error}", now)
        if last is None:
            return self._recovery(RecoveryOutcome.UNKNOWN, "unknown: no reading was taken", now)
        if last.verdict is Verdict.CROSSED:
            return self._recovery(
                RecoveryOutcome.NOT_RECOVERED,
                f"NOT recovered: {self.subject} still {format_value(last.value, self.unit)} on {self.where} "
                f"{duration(self.window * 2)} after the rollback; the new version was probably not the cause",
                now,
            )
        if last.verdict is Verdict.CLEAR and self.healthy_since is not None:
            return self._recovery(
                RecoveryOutcome.UNKNOWN,
                f"unknown: {self.subject} on {self.where} back at {format_value(last.value, self.unit)} only "
                f"{duration((now - self.healthy_since).total_seconds())} ago, less than the "
                f"{duration(self.window)} window",
                now,
            )
        return self._recovery(RecoveryOutcome.UNKNOWN,
                              f"unknown: {self.subject} on {self.where}: {last.describe(self.unit)}", now)
