"""The promotion plan and the gate's review: pure functions people read the output of."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from receiver.domain.phases import DEFAULT_PHASES, phase_of
from receiver.domain.promotion import (
    DEFAULT_CRITERIA,
    Criterion,
    PlanError,
    Result,
    Review,
    judge,
    plan_promotion,
)
from receiver.domain.rollback import RollbackRecord


def test_week_1_moves_to_week_2_canary_up_to_3_and_stable_down_to_2() -> None:
    p = plan_promotion(phase_of(1, 5), 4, DEFAULT_PHASES)
    assert (p.to.name, p.canary_from, p.canary_to, p.stable_from, p.stable_to) == ("week-2", 1, 3, 4, 2)


def test_week_3_moves_to_week_4_where_the_stable_has_no_pods() -> None:
    p = plan_promotion(phase_of(4, 5), 1, DEFAULT_PHASES)
    assert (p.to.name, p.canary_to, p.stable_to) == ("week-4", 5, 0)


def test_a_phase_scales_with_the_full_count() -> None:
    p = plan_promotion(phase_of(2, 10), 8, DEFAULT_PHASES)
    assert (p.canary_to, p.stable_to) == (6, 4)


def test_nothing_is_ahead_of_week_4() -> None:
    with pytest.raises(PlanError, match="nothing to promote to"):
        plan_promotion(phase_of(5, 5), 0, DEFAULT_PHASES)


@pytest.mark.parametrize("to", ["week-1", "week-2"])
def test_to_a_week_that_is_not_ahead_is_refused(to: str) -> None:
    with pytest.raises(PlanError, match="not ahead"):
        plan_promotion(phase_of(3, 5), 2, DEFAULT_PHASES, to)


def test_to_an_unknown_phase_is_refused_naming_the_listed_ones() -> None:
    with pytest.raises(PlanError, match="week-1, week-2, week-3, week-4"):
        plan_promotion(phase_of(1, 5), 4, DEFAULT_PHASES, "week-9")


def test_the_error_rate_bar_is_1_percent_in_week_1_and_2_percent_later() -> None:
    error_rate = DEFAULT_CRITERIA[0]
    assert judge(error_rate, phase_of(1, 5), [0.015]).result is Result.FAIL
    assert judge(error_rate, phase_of(3, 5), [0.015]).result is Result.PASS


def test_the_worst_series_is_judged_and_no_data_does_not_pass() -> None:
    cpu = next(c for c in DEFAULT_CRITERIA if c.name == "CPU")
    assert judge(cpu, phase_of(1, 5), [0.2, 0.75]).measured == "75.00 %"
    assert judge(cpu, phase_of(1, 5), []).result is Result.NOT_MEASURED
    assert judge(cpu, phase_of(1, 5), [float("nan")]).result is Result.NOT_MEASURED


def test_without_prometheus_every_criterion_reads_not_measured_and_the_gate_is_not_passed() -> None:
    rows = tuple(judge(c, phase_of(1, 5), None, "no prometheus configured") for c in DEFAULT_CRITERIA)
    review = Review(phase_of(1, 5), 86400, rows, measured=False)
    assert not review.passed
    table = review.table()
    assert "over the last 24 h" in table
    assert table.count("not measured (no prometheus configured)") == len(DEFAULT_CRITERIA)


def test_a_criterion_query_may_only_use_selector_and_window() -> None:
    with pytest.raises(ValidationError, match=r"\$selector and \$window"):
        Criterion(name="x", query="up{$service}", levels={"default": 1})


def test_a_criterion_needs_a_default_level() -> None:
    with pytest.raises(ValidationError, match="default"):
        Criterion(name="x", query="up{$selector}", levels={"week-1": 1})


def test_a_record_written_before_promotions_existed_reads_as_a_rollback() -> None:
    old = {"id": "abc", "target": "t", "namespace": "n", "stable": "s", "canary": "c",
           "replicas": 5, "phase": "succeeded", "started_at": "2026-11-30T10:00:00+00:00",
           "trigger": "alert", "reason": "r"}
    record = RollbackRecord.from_json(json.loads(json.dumps(old)))
    assert record.kind == "rollback" and not record.is_promotion
    assert RollbackRecord.from_json({**old, "kind": "promotion"}).is_promotion

