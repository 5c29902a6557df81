"""The I/O half of "is it really the canary?": ask Prometheus about both versions.

Runs before the Lease claim and is bounded by prometheus.decision_wait_seconds: both
versions are queried at once, and when no answer comes in time the check is skipped
with the reason (receiver.domain.canary_check decides what that means: act as today).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from receiver.domain.canary_check import JUDGED_OPS, StableCheck
from receiver.domain.decisions import Decision
from receiver.domain.promql import PromQLError, expr_from_generator_url, for_version, split_threshold
from receiver.domain.readings import judge
from receiver.domain.settings import Target
from receiver.prometheus.errors import PrometheusError
from receiver.prometheus.results import QueryResult

log = structlog.get_logger(__name__)


class Querier(Protocol):
    async def query(self, expr: str, *, wait: float, at: float | None = None) -> QueryResult: ...


class StableProbe:
    """Evaluates the alert's own expression for the stable and the canary version."""

    def __init__(self, client: Querier, wait: float) -> None:
        self.client = client
        self.wait = wait

    async def check(self, decision: Decision, target: Target) -> StableCheck:
        try:
            expr = expr_from_generator_url(decision.generator_url or "")
            split = split_threshold(expr)
            if split is None:
                return StableCheck(skipped=f"the alert's expression {expr!r} is not of the form <value> > <number>")
            if split.op not in JUDGED_OPS:
                return StableCheck(skipped=f"the alert's expression compares with {split.op!r}: no direction to judge")
            v = target.versions
            queries = [for_version(split.value, version, label=v.label) for version in (v.stable, v.canary)]
        except PromQLError as e:
            return StableCheck(skipped=str(e))
        try:
            stable, canary = await asyncio.gather(*(self.client.query(q, wait=self.wait) for q in queries))
        except PrometheusError as e:
            log.warning("canary_check_skipped", target=target.name, reason=e.reason)
            return StableCheck(skipped=e.reason)
        except Exception as e:  # an answer nobody foresaw: act as without Prometheus, never fail the webhook
            log.exception("canary_check_failed", target=target.name)
            return StableCheck(skipped=f"the check failed: {type(e).__name__}: {e}")
        result = StableCheck(
            stable=judge([s.value for s in stable.samples], split.threshold, split.op),
            canary=judge([s.value for s in canary.samples], split.threshold, split.op),
        )
        log.info("canary_checked", target=target.name, stable=result.stable.verdict.value if result.stable else None,
                 canary=result.canary.verdict.value if result.canary else None)
        return result
