"""The weekly "proceed or roll back?" gate and the promotion plan: pure data and text.

The rollout guide ends every week with a review of the canary's numbers against the
week's bar; ``receiver promote`` measures them in Prometheus over a soak window and
refuses to move the split when one is missed (or cannot be measured) unless a person
forces it with a reason. Queries are templates (``$selector``: the target's matchers,
which select the canary; ``$window``: the soak window as a PromQL duration) so a
service with other metric names lists its own in config.yaml.

The plan is computed from the live split (phases.phase_of), never stored: week 1 -> 2 at
a full count of 5 is canary 1 -> 3, stable 4 -> 2, applied stable-last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from string import Template
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from receiver.domain.phases import DEFAULT_KEY, PhaseSpec, RolloutPhase, threshold_for
from receiver.domain.rollback import Phase, RollbackRecord

DEFAULT_SOAK_SECONDS = 24 * 3600

_ERRORS = 'http_requests_total{code=~"5..",$selector}'
_RATE = "sum by (service, version) (rate({m}[$window]))"
_P95 = "histogram_quantile(0.95, sum by (service, version, le) (rate({m}_bucket{{$selector}}[$window])))"


class Criterion(BaseModel):
    """One line of the review: a query, the level per week, and which side passes.

    ``levels`` reads like a rule's thresholds: ``{week-1: 0.01, default: 0.02}``; the
    level of the week being left applies. The worst series the query returns is judged:
    a query returning nothing (or only NaN) is "no data", which does not pass.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=63)
    query: str = Field(min_length=1, description="PromQL with $selector and $window.")
    levels: dict[str, float] = Field(description="Pass below (or at most) this level, per phase.")
    unit: Literal["ratio", "seconds", "count"] = "ratio"
    op: Literal["<", "<="] = "<"

    @field_validator("levels")
    @classmethod
    def _default(cls, v: dict[str, float]) -> dict[str, float]:
        if DEFAULT_KEY not in v:
            raise ValueError(f"needs a {DEFAULT_KEY!r} level (it applies to every week not listed)")
        return v

    @field_validator("query")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            Template(v).substitute(selector="", window="1s")
        except (KeyError, ValueError) as e:
            raise ValueError(f"only $selector and $window may be used in the query ({e})") from None
        return v

    def expr(self, selector: str, window_seconds: int) -> str:
        return Template(self.query).substitute(selector=selector, window=f"{window_seconds}s")


#: The guide's weekly bar, as the shipped rules and the fake finance-service measure it.
DEFAULT_CRITERIA: tuple[Criterion, ...] = (
    Criterion(name="error rate",
              query=f"{_RATE.format(m=_ERRORS)} / {_RATE.format(m='http_requests_total{$selector}')}",
              levels={"week-1": 0.01, DEFAULT_KEY: 0.02}),
    Criterion(name="p95 response time", query=_P95.format(m="http_request_duration_seconds"),
              levels={"week-1": 0.3, DEFAULT_KEY: 0.5}, unit="seconds"),
    Criterion(name="DB query p95", query=_P95.format(m="db_query_duration_seconds"),
              levels={DEFAULT_KEY: 0.1}, unit="seconds"),
    Criterion(name="external API p95", query=_P95.format(m="external_api_duration_seconds"),
              levels={DEFAULT_KEY: 1.0}, unit="seconds"),
    Criterion(name="CPU", query="max by (service, version) (max_over_time(process_cpu_usage{$selector}[$window]))",
              levels={DEFAULT_KEY: 0.7}),
    Criterion(name="memory",
              query="max by (service, version) (max_over_time(process_memory_usage{$selector}[$window]))",
              levels={DEFAULT_KEY: 0.8}),
    Criterion(name="rollback alerts fired",
              query='count(count by (alertname) (max_over_time(ALERTS{alertstate="firing",'
                    'rollback="immediate",$selector}[$window]))) or vector(0)',
              levels={DEFAULT_KEY: 0.0}, unit="count", op="<="),
)


class PromotionSettings(BaseModel):
    """config.yaml ``settings.promotion``: the soak window and the gate's criteria."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    soak_seconds: int = Field(
        default=DEFAULT_SOAK_SECONDS, ge=1,
        description="Window the gate measures over (the guide's weeks are a week long; 24 h by default).",
    )
    criteria: tuple[Criterion, ...] | None = Field(
        default=None, min_length=1,
        description="The gate's criteria (name, query with $selector and $window, levels per phase, "
        "unit, op); default (null): the rollout guide's weekly bar, see README 'Promotion'.",
    )

    @property
    def gate(self) -> tuple[Criterion, ...]:
        """The criteria in force: the configured ones, else the guide's."""
        return self.criteria or DEFAULT_CRITERIA


class Result(StrEnum):
    PASS = "pass"
    FAIL = "FAIL"
    NOT_MEASURED = "not measured"


@dataclass(frozen=True, slots=True)
class Row:
    """One criterion's line in the review."""

    criterion: str
    level: str
    measured: str
    result: Result
    note: str = ""


def fmt(value: float, unit: str) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if unit == "ratio":
        return f"{value * 100:.2f} %"
    if unit == "seconds":
        return f"{value * 1000:.0f} ms"
    return f"{value:g}"


def judge(criterion: Criterion, phase: RolloutPhase, values: Sequence[float] | None,
          problem: str = "") -> Row:
    """The row for ``criterion``: ``values`` None = not measured (``problem`` says why)."""
    level = threshold_for(criterion.levels, phase).value
    shown = f"{criterion.op} {fmt(level, criterion.unit)}"
    if values is None:
        return Row(criterion.name, shown, "-", Result.NOT_MEASURED, problem)
    defined = [v for v in values if not math.isnan(v)]
    if not defined:
        return Row(criterion.name, shown, "no data", Result.NOT_MEASURED,
                   problem or "the query returned no series in the window")
    worst = max(defined)
    ok = worst < level if criterion.op == "<" else worst <= level
    return Row(criterion.name, shown, fmt(worst, criterion.unit), Result.PASS if ok else Result.FAIL)


@dataclass(frozen=True, slots=True)
class Review:
    """The gate's outcome: every row, for the week being left, over the soak window."""

    phase: RolloutPhase
    window_seconds: int
    rows: tuple[Row, ...]
    measured: bool  # False: no Prometheus configured

    @property
    def passed(self) -> bool:
        return all(r.result is Result.PASS for r in self.rows)

    @property
    def verdict(self) -> str:
        if self.passed:
            return "gate passed"
        failed = [r.criterion for r in self.rows if r.result is Result.FAIL]
        unmeasured = [r.criterion for r in self.rows if r.result is Result.NOT_MEASURED]
        parts = ([f"failed: {', '.join(failed)}"] if failed else []) + (
            [f"not measured: {', '.join(unmeasured)}"] if unmeasured else [])
        return "gate NOT passed (" + "; ".join(parts) + ")"

    def table(self) -> str:
        """The review as people read it in a terminal or a Slack code block."""
        head = ("criterion", "level", "measured", "result")
        lines = [(r.criterion, r.level, r.measured, r.result.value + (f" ({r.note})" if r.note else ""))
                 for r in self.rows]
        widths = [max(len(x[i]) for x in (head, *lines)) for i in range(3)]
        out = [f"Gate for leaving {self.phase.text}, over the last {window_text(self.window_seconds)}:"]
        for row in (head, *lines):
            out.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
        out.append(self.verdict)
        return "\n".join(out)


def window_text(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


STOPPED = "stopped: a rollback took over the target's Lease; the rollback's outcome is the target's state now"


def stopped_by_rollback(record: RollbackRecord, at: datetime) -> RollbackRecord:
    """A promotion a rollback pre-empted, as it is kept in the target's history."""
    return replace(record, phase=Phase.FAILED, finished_at=record.finished_at or at,
                   error=record.error or STOPPED)


class PlanError(ValueError):
    """No promotion can be planned (nothing ahead, --to not ahead, unknown phase)."""


@dataclass(frozen=True, slots=True)
class PromotionPlan:
    """From the live split to the next phase: canary up first, then stable down."""

    current: RolloutPhase
    to: PhaseSpec
    canary_from: int
    canary_to: int
    stable_from: int
    stable_to: int

    def describe(self, canary: str, stable: str) -> str:
        return (f"{self.current.text} -> {self.to.display}: scale {canary} {self.canary_from} -> "
                f"{self.canary_to}, verify its pods Ready, then scale {stable} {self.stable_from} "
                f"-> {self.stable_to}")


def plan_promotion(current: RolloutPhase, stable_replicas: int, phases: Sequence[PhaseSpec],
         to: str | None = None) -> PromotionPlan:
    """The move one phase forward (or to ``to``, which must be ahead of the live split).

    A phase's canary count is its share of the full count (week 2 = 3/5 of 10 = 6); a
    phase that is no whole number of pods at this full count cannot be promoted to.
    """
    full = current.full_count
    share_now = Fraction(min(current.canary_replicas, full), full)
    ahead = [p for p in phases if p.share > share_now]
    if to is None:
        reachable = [p for p in ahead if (p.share * full).denominator == 1]
        if not reachable:
            raise PlanError(f"nothing to promote to: the target is at {current} and no listed phase is ahead")
        spec = reachable[0]
    else:
        spec_or_none = next((p for p in phases if p.name == to), None)
        if spec_or_none is None:
            raise PlanError(f"unknown phase {to!r}; listed: {', '.join(p.name for p in phases)}")
        spec = spec_or_none
        if spec not in ahead:
            raise PlanError(f"{spec.name} is not ahead of the live split ({current})")
        if (spec.share * full).denominator != 1:
            raise PlanError(f"{spec.name} ({spec.canary_replicas} of {spec.of}) is no whole number "
                            f"of pods at a full count of {full}")
    canary_to = int(spec.share * full)
    return PromotionPlan(current=current, to=spec, canary_from=current.canary_replicas,
                         canary_to=canary_to, stable_from=stable_replicas, stable_to=full - canary_to)

