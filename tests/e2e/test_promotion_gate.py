"""The promotion gate against Debian's real Prometheus scraping the fake finance-service.

The default criteria are PromQL over the service's real metric names and the shipped
rules' ALERTS, so this is where a renamed metric or a broken query would show.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from receiver.domain.phases import phase_of
from receiver.domain.prometheus_settings import PrometheusSettings
from receiver.domain.promotion import PromotionSettings, Result, Review
from receiver.rollback.promotion import measure
from tests.e2e.fake_service import start_fake_service
from tests.e2e.prom import running_prometheus
from tests.e2e.rules_fast import RULES, fast_rules
from tests.executor.conftest import make_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed"),
]

SOAK = PromotionSettings(soak_seconds=8)


async def review_until(prom_url: str, week: int, done: Callable[[Review], bool]) -> Review:
    """Measure the gate until ``done`` holds (Prometheus needs a few scrapes per window)."""
    target = make_config(target={"matchers": ['service="finance-service"', 'version!="v1"']}).targets[0]
    canary = {1: 1, 2: 3, 3: 4}[week]
    review: Review | None = None
    for _ in range(120):
        review = await measure(PrometheusSettings(url=prom_url), SOAK, target, phase_of(canary, 5))
        if done(review):
            return review
        await asyncio.sleep(0.25)
    assert review is not None
    pytest.fail("gate never reached the expected state:\n" + review.table())


def row(review: Review, name: str) -> Result:
    return next(r.result for r in review.rows if r.criterion == name)


async def test_a_healthy_canary_passes_and_an_erroring_one_fails_the_week_1_gate(tmp_path: Path) -> None:
    rules = fast_rules(RULES, tmp_path / "rules-fast.yml")
    v1 = await start_fake_service("v1", requests_per_second=400)
    v2 = await start_fake_service("v2", requests_per_second=200)
    try:
        async with running_prometheus([v1.metrics_url, v2.metrics_url], rules, tmp_path) as prom:
            healthy = await review_until(prom.url, 1, lambda r: r.passed)
            assert {r.result for r in healthy.rows} == {Result.PASS}
            assert "gate passed" in healthy.table()

            v2.set_error_ratio(0.015)  # above week 1's 1 %, below week 2's 2 %
            failing = await review_until(
                prom.url, 1, lambda r: row(r, "error rate") is Result.FAIL
                and row(r, "rollback alerts fired") is Result.FAIL)
            assert not failing.passed
            assert "failed: error rate" in failing.verdict
    finally:
        await v1.stop()
        await v2.stop()


async def test_prometheus_that_does_not_answer_leaves_every_criterion_not_measured() -> None:
    target = make_config().targets[0]
    review = await measure(PrometheusSettings(url="http://127.0.0.1:9", request_timeout_seconds=0.2),
                           PromotionSettings(), target, phase_of(1, 5))
    assert not review.passed
    assert {r.result for r in review.rows} == {Result.NOT_MEASURED}
    assert all("no answer from Prometheus" in r.note for r in review.rows)
