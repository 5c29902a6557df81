"""The rollout phase read from the live split, and the threshold each phase applies."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from receiver.domain.phases import (
    DEFAULT_PHASES,
    PhaseKind,
    PhaseList,
    PhaseSpec,
    PhaseThresholds,
    phase_of,
    threshold_for,
    unknown_phase_keys,
    unreachable_phases,
)


@pytest.mark.parametrize(
    ("canary", "text", "kind"),
    [
        (0, "not started", PhaseKind.NOT_STARTED),
        (1, "week 1", PhaseKind.PHASE),
        (2, "between week 1 and week 2", PhaseKind.BETWEEN),
        (3, "week 2", PhaseKind.PHASE),
        (4, "week 3", PhaseKind.PHASE),
        (5, "week 4", PhaseKind.PHASE),
    ],
)
def test_every_split_of_the_guides_five_pods_reads_as_its_week(canary: int, text: str, kind: PhaseKind) -> None:
    phase = phase_of(canary, 5)
    assert phase.kind is kind
    assert phase.text == text
    assert str(phase) == f"{text} (canary {canary} of 5)"


def test_a_listed_phase_is_keyed_by_its_name_and_an_unlisted_split_by_its_kind() -> None:
    assert phase_of(1, 5).key == "week-1"
    assert phase_of(2, 5).key == "between"
    assert phase_of(0, 5).key == "not_started"


def test_a_target_of_ten_pods_is_in_week_one_at_two_canary_pods() -> None:
    assert phase_of(2, 10).text == "week 1"
    assert phase_of(1, 10).text == "before week 1"
    assert phase_of(6, 10).text == "week 2"
    assert phase_of(9, 10).text == "between week 3 and week 4"


@pytest.mark.parametrize(
    ("canary", "full", "text"),
    [
        (1, 3, "between week 1 and week 2"),  # 33 %: week 1 would be 0.6 pods
        (2, 3, "between week 2 and week 3"),  # 67 %
        (3, 3, "week 4"),
        (1, 7, "before week 1"),  # 14 %
        (2, 7, "between week 1 and week 2"),  # 29 %
        (7, 7, "week 4"),
    ],
)
def test_odd_full_counts_never_round_a_split_into_a_week(canary: int, full: int, text: str) -> None:
    assert phase_of(canary, full).text == text


def test_odd_full_counts_name_the_weeks_they_can_never_be_in() -> None:
    assert [p.name for p in unreachable_phases(3)] == ["week-1", "week-2", "week-3"]
    assert unreachable_phases(5) == ()
    assert [p.name for p in unreachable_phases(10)] == []


def test_a_canary_above_the_full_count_is_fully_rolled_out_and_says_its_real_split() -> None:
    phase = phase_of(6, 5)
    assert phase.text == "week 4"
    assert phase.split == "canary 6 of 5"


def test_a_full_canary_that_no_phase_lists_is_complete() -> None:
    phases = DEFAULT_PHASES[:3]
    assert phase_of(5, 5, phases).kind is PhaseKind.COMPLETE
    assert phase_of(5, 5, phases).text == "complete"
    assert phase_of(9, 10, phases).text == "after week 3"


def test_a_target_can_list_its_own_phases_for_three_pods() -> None:
    phases = (
        PhaseSpec(name="pilot", canary_replicas=1, of=3, title="the pilot"),
        PhaseSpec(name="half", canary_replicas=2, of=3),
    )
    assert phase_of(1, 3, phases).text == "the pilot"
    assert phase_of(2, 3, phases).text == "half"
    assert phase_of(3, 3, phases).text == "complete"


@pytest.mark.parametrize(("canary", "full"), [(-1, 5), (1, 0)])
def test_an_impossible_split_is_refused(canary: int, full: int) -> None:
    with pytest.raises(ValueError, match=r"negative|at least 1"):
        phase_of(canary, full)


class _Schema(BaseModel):
    phases: PhaseList = DEFAULT_PHASES


@pytest.mark.parametrize(
    ("phases", "error"),
    [
        ([{"name": "week-1", "canary_replicas": 1}, {"name": "week-1", "canary_replicas": 3}], "duplicate phase"),
        ([{"name": "week-2", "canary_replicas": 3}, {"name": "week-1", "canary_replicas": 1}], "must grow"),
        ([{"name": "a", "canary_replicas": 1}, {"name": "b", "canary_replicas": 2, "of": 10}], "must grow"),
        ([{"name": "default", "canary_replicas": 1}], "reserved"),
        ([{"name": "week-1", "canary_replicas": 6}], "more than of=5"),
        ([{"name": "Week 1", "canary_replicas": 1}], "pattern"),
        ([{"name": "week-1", "canary_replicas": 1, "share": 0.2}], "Extra inputs"),
    ],
)
def test_a_phase_list_that_cannot_be_read_unambiguously_is_refused(phases: list[object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        _Schema.model_validate({"phases": phases})


def test_the_default_phase_list_is_the_guides_four_weeks() -> None:
    assert [(p.name, p.canary_replicas, p.of) for p in _Schema().phases] == [
        ("week-1", 1, 5), ("week-2", 3, 5), ("week-3", 4, 5), ("week-4", 5, 5),
    ]


def test_the_same_error_rate_crosses_week_ones_threshold_and_not_week_twos() -> None:
    thresholds = PhaseThresholds.model_validate({"week-1": 0.01, "default": 0.05})
    week1 = thresholds.for_phase(phase_of(1, 5))
    week2 = thresholds.for_phase(phase_of(3, 5))
    assert (week1.value, week1.source) == (0.01, "week-1")
    assert (week2.value, week2.source) == (0.05, "default")
    assert week1.value < 0.012 <= week2.value


@pytest.mark.parametrize("canary", [0, 2, 5])
def test_splits_outside_a_listed_phase_use_the_default_threshold(canary: int) -> None:
    picked = threshold_for({"week-1": 0.01, "week-4": 0.03, "default": 0.05}, phase_of(canary, 5, DEFAULT_PHASES[:3]))
    assert picked.is_default
    assert picked.value == 0.05


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"week-1": 0.01}, "needs a 'default' threshold"),
        ({"Week 1": 0.01, "default": 0.05}, "not a phase name"),
        ({"week-1": "high", "default": 0.05}, "valid number"),
        ({"week-1": float("nan"), "default": 0.05}, "finite number"),
    ],
)
def test_thresholds_without_a_default_or_with_bad_levels_are_refused(data: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        PhaseThresholds.model_validate(data)


def test_a_threshold_keyed_by_a_phase_that_is_not_listed_is_named() -> None:
    assert unknown_phase_keys({"week1": 0.01, "week-2": 0.03, "default": 0.05}, DEFAULT_PHASES) == ("week1",)
