"""The rollout phase of a target, derived from the live split, and per-phase thresholds.

The rollout guide moves traffic in weeks (week 1: the canary runs 1 of 5 pods, week 2:
3, week 3: 4, week 4: 5) and its rollback conditions depend on the week. Storing "we
are in week 2" by hand would drift from what the cluster really runs, so the phase is
never stored: it is computed from the canary's spec replicas against the target's full
count every time it is needed.

A phase is a share of the full count (1 of 5 = 20 %), so a target of 10 replicas is in
week 1 at 2 canary pods. Shares are compared exactly (fractions, no rounding): a split
that is no listed phase at this full count (v2 at 2 of 5, or 1 of 3 where week 1 would
be 0.6 pods) is reported as "between week 1 and week 2" and judged by the default
thresholds. Rounding would silently make two weeks the same split on small targets;
such a target should list its own phases (``unreachable_phases`` names the ones its
full count can never show, for check-config).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, model_validator

#: The key of a rule's thresholds that applies wherever no phase-specific one does.
DEFAULT_KEY = "default"

_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class PhaseSpec(BaseModel):
    """One listed phase: its name and the canary's pod count out of ``of``.

    ``of`` defaults to the guide's 5 pods, so ``{name: week-2, canary_replicas: 3}``
    reads as the guide writes it; the share (3/5) is what is compared.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=_NAME, max_length=63,
        description="Key for per-phase thresholds and metric labels, e.g. week-1.",
    )
    canary_replicas: int = Field(ge=1, description="Canary pods in this phase, out of `of`.")
    of: int = Field(default=5, ge=1, description="The full count the canary_replicas are counted against.")
    title: str | None = Field(default=None, description="How people read it; default: the name, e.g. 'week 1'.")

    @model_validator(mode="after")
    def _within_full_count(self) -> PhaseSpec:
        if self.canary_replicas > self.of:
            raise ValueError(f"canary_replicas {self.canary_replicas} is more than of={self.of}")
        return self

    @property
    def share(self) -> Fraction:
        """The canary's exact share of the full count in this phase."""
        return Fraction(self.canary_replicas, self.of)

    @property
    def display(self) -> str:
        """The name as people say it: ``week-1`` -> ``week 1``."""
        return self.title or self.name.replace("-", " ")


#: The rollout guide's four weeks: v2 at 1, 3, 4 and 5 of 5 pods.
DEFAULT_PHASES: tuple[PhaseSpec, ...] = (
    PhaseSpec(name="week-1", canary_replicas=1),
    PhaseSpec(name="week-2", canary_replicas=3),
    PhaseSpec(name="week-3", canary_replicas=4),
    PhaseSpec(name="week-4", canary_replicas=5),
)


def check_phases(phases: Sequence[PhaseSpec]) -> tuple[PhaseSpec, ...]:
    """Refuse a phase list that cannot be read unambiguously; return it as a tuple.

    Names must be unique and not the reserved ``default``; shares must strictly grow,
    because a split is matched by its share and two phases at one share would make
    the week (and so the threshold) a matter of list order.
    """
    names = [p.name for p in phases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate phase names: {', '.join(dupes)}")
    if DEFAULT_KEY in names:
        raise ValueError(f"{DEFAULT_KEY!r} is reserved for the thresholds outside any phase")
    for before, after in itertools.pairwise(phases):
        if after.share <= before.share:
            raise ValueError(
                f"phases must grow: {after.name} ({after.canary_replicas} of {after.of}) "
                f"does not come after {before.name} ({before.canary_replicas} of {before.of})"
            )
    return tuple(phases)


#: A validated phase list, for the config schema: ``phases: PhaseList = DEFAULT_PHASES``.
PhaseList = Annotated[tuple[PhaseSpec, ...], AfterValidator(check_phases)]


class PhaseKind(StrEnum):
    """Where a split sits against the listed phases."""

    NOT_STARTED = "not_started"  # canary at 0: nothing rolled out yet (or rolled back)
    PHASE = "phase"  # exactly a listed phase
    BETWEEN = "between"  # no listed phase: between two, before the first or after the last
    COMPLETE = "complete"  # canary at (or above) the full count and no phase lists that


@dataclass(frozen=True, slots=True)
class RolloutPhase:
    """The phase of one target at one moment, with the split it was derived from.

    ``name`` is the listed phase (kind PHASE); ``after``/``before`` are the listed
    phases around a BETWEEN split (None = before the first / after the last).
    """

    kind: PhaseKind
    canary_replicas: int
    full_count: int
    name: str | None = None
    display_name: str | None = None
    after: str | None = None
    before: str | None = None

    @property
    def text(self) -> str:
        """What people read: "week 1", "between week 1 and week 2", "not started"."""
        if self.kind is PhaseKind.PHASE:
            return self.display_name or self.name or ""
        if self.kind is PhaseKind.NOT_STARTED:
            return "not started"
        if self.kind is PhaseKind.COMPLETE:
            return "complete"
        if self.after and self.before:
            return f"between {self.after} and {self.before}"
        if self.before:
            return f"before {self.before}"
        return f"after {self.after}"

    @property
    def split(self) -> str:
        """The split itself, e.g. "canary 1 of 5"."""
        return f"canary {self.canary_replicas} of {self.full_count}"

    @property
    def key(self) -> str:
        """A stable label value: the phase name, or the kind ("between", "complete")."""
        return self.name if self.kind is PhaseKind.PHASE and self.name else self.kind.value

    def __str__(self) -> str:
        return f"{self.text} ({self.split})"


def phase_of(
    canary_replicas: int, full_count: int, phases: Sequence[PhaseSpec] = DEFAULT_PHASES
) -> RolloutPhase:
    """The phase the live split is in: canary spec replicas against the full count.

    A canary above the full count (a surge or a hand edit) counts as fully rolled out;
    the split it reports still shows the real numbers.
    """
    if full_count < 1:
        raise ValueError(f"full count must be at least 1, not {full_count}")
    if canary_replicas < 0:
        raise ValueError(f"canary replicas cannot be negative ({canary_replicas})")
    n, full = canary_replicas, full_count
    if n == 0:
        return RolloutPhase(PhaseKind.NOT_STARTED, n, full)
    share = min(Fraction(n, full), Fraction(1))
    lower: PhaseSpec | None = None
    for spec in phases:
        if spec.share == share:
            return RolloutPhase(PhaseKind.PHASE, n, full, name=spec.name, display_name=spec.display)
        if spec.share > share:
            return RolloutPhase(PhaseKind.BETWEEN, n, full, after=lower.display if lower else None,
                                before=spec.display)
        lower = spec
    if share == 1:
        return RolloutPhase(PhaseKind.COMPLETE, n, full)
    return RolloutPhase(PhaseKind.BETWEEN, n, full, after=lower.display if lower else None)


def unreachable_phases(full_count: int, phases: Sequence[PhaseSpec] = DEFAULT_PHASES) -> tuple[PhaseSpec, ...]:
    """Listed phases no whole number of canary pods can show at this full count.

    Week 1 (1 of 5) at a full count of 3 would be 0.6 pods: such a target never is
    in week 1 and is judged by the default thresholds there; check-config should say
    so, so that its owner lists phases for it.
    """
    return tuple(p for p in phases if (p.share * full_count).denominator != 1)


def _check_threshold_keys(v: dict[str, float]) -> dict[str, float]:
    if DEFAULT_KEY not in v:
        raise ValueError(
            f"needs a {DEFAULT_KEY!r} threshold: it applies outside the listed phases "
            "(between two weeks, not started, complete)"
        )
    for key in v:
        if key != DEFAULT_KEY and not re.match(_NAME, key):
            raise ValueError(f"{key!r} is not a phase name (lower-case letters, digits, '-')")
    return v


class PhaseThresholds(RootModel[dict[str, Annotated[float, Field(allow_inf_nan=False)]]]):
    """A rule's thresholds per phase: ``{week-1: 0.01, default: 0.05}``.

    ``default`` is required: a split between two weeks, or a phase without its own
    entry, must still have a level, and guessing one (the strictest? none?) is the
    kind of silent choice a rollback must not make. Whether every key names a listed
    phase is checked against the phase list by ``unknown_phase_keys`` (the schema
    that holds both calls it), so a typo (``week1``) is refused, not ignored.
    """

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _keys(self) -> PhaseThresholds:
        _check_threshold_keys(self.root)
        return self

    def for_phase(self, phase: RolloutPhase) -> PhaseThreshold:
        """See ``threshold_for``."""
        return threshold_for(self.root, phase)


@dataclass(frozen=True, slots=True)
class PhaseThreshold:
    """The level that applies and where it came from (a phase name or "default")."""

    value: float
    source: str

    @property
    def is_default(self) -> bool:
        return self.source == DEFAULT_KEY


def threshold_for(thresholds: Mapping[str, float], phase: RolloutPhase) -> PhaseThreshold:
    """The threshold for ``phase``: its own entry when it is a listed phase that has one,
    else ``default`` (between weeks, not started, complete, or a phase without an entry).
    """
    if phase.kind is PhaseKind.PHASE and phase.name is not None and phase.name in thresholds:
        return PhaseThreshold(thresholds[phase.name], phase.name)
    if DEFAULT_KEY not in thresholds:
        raise ValueError(f"thresholds have no {DEFAULT_KEY!r} entry for {phase.text}")
    return PhaseThreshold(thresholds[DEFAULT_KEY], DEFAULT_KEY)


def unknown_phase_keys(thresholds: Mapping[str, float], phases: Sequence[PhaseSpec]) -> tuple[str, ...]:
    """Threshold keys that name no listed phase (a typo would otherwise never apply)."""
    names = {p.name for p in phases}
    return tuple(sorted(k for k in thresholds if k != DEFAULT_KEY and k not in names))
