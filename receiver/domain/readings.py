"""One version's reading of a rule's metric, judged against a threshold.

Both checks of issue 11 ask the same question of Prometheus' answer for one version:
"is v1 as sick as v2?" before acting and "is v1 back under the level?" after. The
answer has four outcomes, and the two that are not numbers must never be mistaken
for health: NaN (0/0, e.g. an error ratio over a window without requests) says
nothing, and no series at all means the expression does not cover that version.
+Inf is a defined value (x/0) and is above every threshold.

Several series for one version (per pod, per flow) are judged by the worst one: a
version is as sick as its sickest series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from receiver.domain.units import format_value


class Verdict(StrEnum):
    CROSSED = "crossed"  # the rule's condition holds (e.g. above the threshold)
    CLEAR = "clear"  # it does not: a defined value on the healthy side
    NO_VALUE = "no_value"  # only NaN: nothing can be said
    NO_SERIES = "no_series"  # Prometheus returned nothing for this version


_BAD_WHEN = {">": True, ">=": True, "<": False, "<=": False}


@dataclass(frozen=True, slots=True)
class Reading:
    """The verdict, the value it rests on (the worst defined one), and how many series."""

    verdict: Verdict
    value: float | None
    threshold: float
    op: str
    series: int

    def describe(self, unit: str = "none") -> str:
        """"7.9 % (> 5 %)", "no value (NaN: no requests in the window?)", "no series"."""
        if self.verdict is Verdict.NO_SERIES:
            return "no series"
        if self.verdict is Verdict.NO_VALUE:
            return "no value (NaN: no requests in the window?)"
        condition = f"{self.op} {format_value(self.threshold, unit)}"
        if self.verdict is Verdict.CLEAR:
            condition = f"not {condition}"
        return f"{format_value(self.value, unit)} ({condition})"


def judge(values: Sequence[float], threshold: float, op: str = ">") -> Reading:
    """Judge one version's values against ``value op threshold`` (the rule's condition).

    ``op`` is the comparison the rule fires on (``split_threshold`` gives it); ``==``
    and ``!=`` are refused: "how far from healthy" has no direction for them.
    """
    if op not in _BAD_WHEN:
        raise ValueError(f"cannot judge a reading with {op!r}: use >, >=, < or <=")
    if math.isnan(threshold):
        raise ValueError("the threshold must be a number")
    if not values:
        return Reading(Verdict.NO_SERIES, None, threshold, op, 0)
    defined = [v for v in values if not math.isnan(v)]
    if not defined:
        return Reading(Verdict.NO_VALUE, None, threshold, op, len(values))
    high = _BAD_WHEN[op]
    worst = max(defined) if high else min(defined)
    crossed = {">": worst > threshold, ">=": worst >= threshold,
               "<": worst < threshold, "<=": worst <= threshold}[op]
    return Reading(Verdict.CROSSED if crossed else Verdict.CLEAR, worst, threshold, op, len(values))
