"""One version's values judged against a rule's threshold: NaN and no series are not health."""

from __future__ import annotations

import math

import pytest

from receiver.domain.readings import Verdict, judge


def test_a_value_above_the_threshold_has_crossed_it() -> None:
    reading = judge([0.079], 0.05)
    assert reading.verdict is Verdict.CROSSED
    assert reading.describe("ratio") == "7.9 % (> 5 %)"


def test_a_value_below_the_threshold_is_clear() -> None:
    reading = judge([0.004], 0.05)
    assert reading.verdict is Verdict.CLEAR
    assert reading.describe("ratio") == "0.4 % (not > 5 %)"


def test_the_sickest_series_of_a_version_decides() -> None:
    reading = judge([0.01, 0.09, 0.02], 0.05)
    assert (reading.verdict, reading.value, reading.series) == (Verdict.CROSSED, 0.09, 3)


def test_nan_says_nothing_rather_than_healthy() -> None:
    reading = judge([math.nan], 0.05)
    assert reading.verdict is Verdict.NO_VALUE
    assert reading.value is None
    assert "NaN" in reading.describe("ratio")


def test_nan_beside_a_defined_value_is_ignored() -> None:
    assert judge([math.nan, 0.07], 0.05).verdict is Verdict.CROSSED


def test_no_series_is_its_own_outcome() -> None:
    reading = judge([], 0.05)
    assert reading.verdict is Verdict.NO_SERIES
    assert reading.describe() == "no series"


def test_plus_infinity_is_above_every_threshold_and_minus_infinity_below() -> None:
    assert judge([math.inf], 1e300).verdict is Verdict.CROSSED
    assert judge([math.inf], 0.05).describe("ratio") == "+Inf (> 5 %)"
    assert judge([-math.inf], 0.05).verdict is Verdict.CLEAR


def test_a_rule_that_fires_below_its_level_is_judged_that_way() -> None:
    assert judge([0.93, 0.97], 0.95, "<").verdict is Verdict.CROSSED
    assert judge([0.96], 0.95, "<").verdict is Verdict.CLEAR
    assert judge([0.95], 0.95, "<=").verdict is Verdict.CROSSED


@pytest.mark.parametrize(("op", "threshold"), [("==", 1.0), ("!=", 1.0), (">", math.nan)])
def test_a_condition_without_a_direction_or_a_number_is_refused(op: str, threshold: float) -> None:
    with pytest.raises(ValueError, match=r"cannot judge|must be a number"):
        judge([1.0], threshold, op)
