"""A promotion: the weekly gate, then one phase forward, stable-last, under the target's Lease.

The same machinery as a rollback (receiver.rollback.steps.Run: pre-flight, scale,
Lease checks, record, Events, annotations, the Slack thread through ``on_change``),
with its own order: scale the canary up, verify its pods Ready by the rollout-status
rules, then scale the stable down and verify it settled, so the count of Ready pods
never drops below the full count. A rollback that fires meanwhile takes the Lease over
(Executor.claim pre-empts a promotion); the promotion reads the Lease before each change,
stops, and records that it was stopped.

``measure`` and ``promote`` are the entry points (the CLI today; a person-action door
may call them later).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog

from receiver.domain.kube_views import DeploymentView
from receiver.domain.phases import RolloutPhase
from receiver.domain.prometheus_settings import PrometheusSettings
from receiver.domain.promotion import (
    Criterion,
    PromotionPlan,
    PromotionSettings,
    Review,
    Row,
    judge,
    stopped_by_rollback,
)
from receiver.domain.rollback import KIND_PROMOTION, Phase, RollbackRecord
from receiver.domain.rollout import Verification
from receiver.domain.settings import Config, Target
from receiver.kube import KubeError
from receiver.kube.lease import (
    LeaseLost,
    history_from_lease,
    holder,
    lease_name,
    lease_namespace,
    record_from_lease,
    update_lease,
    with_history,
    with_records,
)
from receiver.kube.records import ANN_LAST_PROMOTION
from receiver.prometheus.client import PrometheusClient
from receiver.prometheus.errors import PrometheusError
from receiver.rollback.executor import Executor, RollbackBusy
from receiver.rollback.steps import RollbackFailed, Run
from receiver.rollback.verify import Watcher, wait_verified

log = structlog.get_logger(__name__)

__all__ = ["PromotionBusy", "PromotionRun", "measure", "new_promotion", "promote"]

PromotionBusy = RollbackBusy
"""Another rollback or promotion holds the target's Lease; nothing was changed."""



async def measure(prometheus: PrometheusSettings | None, promotion: PromotionSettings, target: Target,
                  phase: RolloutPhase, *, client: PrometheusClient | None = None) -> Review:
    """The gate's review for leaving ``phase``: every criterion over the soak window.

    Without Prometheus every row is "not measured"; a query that fails says why in
    its row, and counts as not measured (a gate never passes on missing numbers)."""
    criteria: Sequence[Criterion] = promotion.gate
    window = promotion.soak_seconds
    if prometheus is None:
        rows = tuple(judge(c, phase, None, "no prometheus configured") for c in criteria)
        return Review(phase, window, rows, measured=False)
    selector = ",".join(target.matchers)
    own = client is None
    prom = client or PrometheusClient(prometheus)
    try:
        async def one(c: Criterion) -> Row:
            try:
                result = await prom.query(c.expr(selector, window), wait=prometheus.request_timeout_seconds)
            except PrometheusError as e:
                return judge(c, phase, None, e.reason)
            return judge(c, phase, [s.value for s in result.samples])

        rows = tuple(await asyncio.gather(*(one(c) for c in criteria)))
    finally:
        if own:
            await prom.close()
    return Review(phase, window, rows, measured=True)


def new_promotion(target: Target, plan: PromotionPlan, review: Review, now: datetime, *,
                  requested_by: str, force_reason: str | None) -> RollbackRecord:
    """A promotion's record: why (the plan, the gate, a forced gate's reason) and who."""
    reason = f"promotion to {plan.to.display} requested by {requested_by}; {review.verdict}"
    if force_reason is not None and not review.passed:
        reason += f"; forced: {force_reason}"
    return RollbackRecord(
        id=uuid.uuid4().hex[:12], target=target.name, namespace=target.namespace,
        stable=target.stable, canary=target.canary, replicas=target.replicas,
        phase=Phase.STARTED, started_at=now, trigger="manual", reason=reason,
        requested_by=requested_by, kind=KIND_PROMOTION, order="canary-up-first",
    )


class PromotionRun(Run):
    """One promotion: pre-flight, canary up, verify, stable down, verify, record."""

    ANNOTATION = ANN_LAST_PROMOTION
    EVENT_ACTION = "Promote"
    EVENT_REASONS = ("Promoted", "PromotionFailed")
    EVENT_SLUG = "promotion"

    def __init__(self, *args: Any, plan: PromotionPlan, review: Review, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan = plan
        self.review = review

    async def confirm_lease(self) -> None:
        """Read the Lease before each change: a rollback may have taken it since the last
        renewal, and a promotion must not move a single pod after that."""
        self._check_lease()
        if self.held is None:
            return
        lease = await self.kube.read_lease(self.held.namespace, self.held.name)
        current = record_from_lease(lease)
        if holder(lease) != self.identity or current is None or current.id != self.record.id:
            self.held.lost.set()
            raise LeaseLost(f"lease {self.held.namespace}/{self.held.name} now held by {holder(lease)}")

    async def execute(self) -> RollbackRecord:
        t, p = self.target, self.plan
        acquired = False
        try:
            self.phase(Phase.SCALING)
            self.step("gate", self.review.table(), ok=True, warning=not self.review.passed)
            stable, canary = await self.preflight()
            if canary is None:
                raise RollbackFailed(f"canary Deployment {t.namespace}/{t.canary} does not exist")
            if (canary.spec_replicas, stable.spec_replicas) != (p.canary_from, p.stable_from):
                self.step("plan", f"the split changed since the plan ({t.canary} at {canary.spec_replicas}, "
                          f"{t.stable} at {stable.spec_replicas}); nothing was changed", ok=False)
                raise RollbackFailed("the split changed since the plan; run promote again")
            self.step("plan", p.describe(t.canary, t.stable))
            await self.confirm_lease()
            await self.scale(t.canary, canary, p.canary_to, "scale-canary")
            deploys, pods = await self.watches.acquire(t.namespace)
            acquired = True
            await self.verify_ready(deploys, pods, t.canary, p.canary_to, stable)
            await self.confirm_lease()
            await self.scale(t.stable, stable, p.stable_to, "scale-stable")
            await self.verify_ready(deploys, pods, t.stable, p.stable_to, stable)
            return await self.finish(Phase.SUCCEEDED, None)
        except RollbackFailed as e:
            return await self.finish(Phase.FAILED, str(e))
        except KubeError as e:
            self.step("error", str(e), ok=False)
            return await self.finish(Phase.FAILED, str(e))
        finally:
            if acquired:
                await self.watches.release(t.namespace)

    async def verify_ready(self, deploys: Any, pods: Any, name: str, desired: int,
                           stable: DeploymentView) -> None:
        """Rolled out at ``desired`` with every pod Ready (the rollback's rules)."""
        self.phase(Phase.VERIFYING)
        t0 = time.monotonic()
        limit = self.timeout(stable)
        watcher = Watcher(deploys, pods, name)
        is_stable = name == self.target.stable

        def on_progress(v: Verification) -> None:
            if is_stable:
                self.progress(stable_ready=v.ready, stable_desired=v.desired, not_ready=v.not_ready)
            else:
                self.progress(canary_pods=v.ready, not_ready=v.not_ready)

        try:
            out = await wait_verified(watcher, desired, t0 + limit, on_progress)
        finally:
            watcher.close()
        v = out.verification
        step = "verify-stable" if is_stable else "verify-canary"
        if out.missing:
            self.step(step, f"{name} was deleted while verifying", since=t0, ok=False)
            raise RollbackFailed(f"Deployment {name} was deleted")
        if v is not None and v.done:
            self.step(step, v.message, since=t0)
            return
        seen = v.message if v is not None else f"{name}'s status was never observed"
        msg = seen if v is not None and v.failed else f"not verified within {limit:g} s: {seen}"
        self.step(step, msg, since=t0, ok=False)
        raise RollbackFailed(msg)

    def outcome_notes(self, ok: bool) -> dict[str, str]:
        t, p, r = self.target, self.plan, self.record
        if not ok:
            note = f"Promotion {r.id} to {p.to.display} failed: {r.error}"
            return {t.canary: note, t.stable: note}
        return {
            t.canary: f"Promoted to {p.to.display} by {r.requested_by} ({r.id}): {p.canary_to} replicas",
            t.stable: f"Scaled to {p.stable_to} for {p.to.display} by promotion {r.id}",
        }


async def promote(executor: Executor, config: Config, target: Target, plan: PromotionPlan,
                  review: Review, *, requested_by: str, force_reason: str | None = None) -> RollbackRecord:
    """Run one promotion to its end. The gate's decision is the caller's (a person's):
    this moves the split whatever the review says, recording the review and any reason.

    Returns the record: SUCCEEDED, FAILED, or FAILED with "stopped: ..." when a rollback
    took the Lease over (then the rollback's own record is in the Lease and this one is
    added to its history). Raises PromotionBusy when the Lease is held."""
    fresh = new_promotion(target, plan, review, executor.clock(), requested_by=requested_by,
                          force_reason=force_reason)

    def make_run(*args: Any, **kwargs: Any) -> Run:
        return PromotionRun(*args, plan=plan, review=review, **kwargs)

    record = await executor.run_promotion(target, fresh, make_run)
    if record.phase.finished:
        return record
    stopped = stopped_by_rollback(record, executor.clock())
    await _keep_in_history(executor, config, target, stopped)
    try:
        executor.on_change(stopped, None)
    except Exception:  # a notifier's bug must not hide the outcome
        log.exception("on_change_failed")
    return stopped


async def _keep_in_history(executor: Executor, config: Config, target: Target,
                           record: RollbackRecord) -> None:
    """Add the stopped promotion to the Lease's history without touching its holder."""
    ns, name = lease_namespace(config, target), lease_name(target)

    def change(lease: Any) -> Any:
        return with_records(lease, None, with_history(history_from_lease(lease), record))

    try:
        await update_lease(executor.kube, ns, name, change)
    except Exception as e:  # best effort: the CLI says the outcome anyway
        log.warning("promotion_history_write_failed", error=str(e))
