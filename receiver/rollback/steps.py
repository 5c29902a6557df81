"""One rollback, step by step: pre-flight, order, scale, verify, record.

Every step reads the cluster before acting, so running the whole sequence again (a
retry, a resume after a crash, a repeat alert) only does what is still missing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from receiver.domain.kube_views import DeploymentView, deployment_view, ready_replicas, replicas
from receiver.domain.rollback import Before, OnChange, Phase, RollbackRecord, Step
from receiver.domain.rollout import Verification, choose_order
from receiver.domain.settings import Config, StepOrder, Target
from receiver.kube import FIELD_MANAGER, Kube, KubeError, Obj, micro_time, parse_time
from receiver.kube.lease import HeldLease, LeaseLost, with_history
from receiver.kube.records import ANN_LAST, last_rollback_annotation
from receiver.rollback.verify import NamespaceWatches, Watcher, wait_pods_gone, wait_verified

log = structlog.get_logger(__name__)

REPORTING_CONTROLLER = "rollback-receiver.io/receiver"
DEFAULT_TIMEOUT = 300.0


class RollbackFailed(Exception):
    """Ends the run with phase FAILED and this message as the record's error."""


def _replicas_manager(d: DeploymentView) -> tuple[str, datetime | None] | None:
    """Who owns spec.replicas now (managedFields), other than us; the newest entry wins."""
    best: tuple[str, datetime | None] | None = None
    for owner in d.replicas_owners:
        if owner.manager == FIELD_MANAGER:
            continue
        when = parse_time(owner.time)
        if best is None or (when and (best[1] is None or when > best[1])):
            best = (owner.manager, when)
    return best


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every run of one Executor talks to: the cluster, the shared watches, who we
    are, where changes are reported, and the clock the timeline is stamped with."""

    kube: Kube
    watches: NamespaceWatches
    identity: str
    on_change: OnChange
    clock: Callable[[], datetime]


class Run:
    """The state of one running rollback; the Executor owns and drives it.

    A promotion (receiver.rollback.promotion) is a subclass with its own ``execute``
    and these four class attributes: the same pre-flight, scaling, Lease checks,
    records, Events and annotations."""

    ANNOTATION = ANN_LAST
    EVENT_ACTION = "Rollback"
    EVENT_REASONS = ("RolledBack", "RollbackFailed")
    EVENT_SLUG = "rollback"

    def __init__(
        self,
        context: RunContext,
        *,
        config: Config,
        target: Target,
        record: RollbackRecord,
        held: HeldLease | None,
        resumed: bool = False,
        prefetched: tuple[Obj | BaseException, Obj | BaseException] | None = None,
        owner: asyncio.Task[Any] | None = None,
    ) -> None:
        self.owner = owner  # the task whose cancellation stops the steps
        self.resumed = resumed
        self.prefetched = prefetched
        self.context = context
        self.kube = context.kube
        self.watches = context.watches
        self.config = config
        self.target = target
        self.record = record
        self.held = held
        self.identity = context.identity
        self.on_change = context.on_change
        self.clock = context.clock
        self.started = time.monotonic()
        self.scale_patches = 0
        self.seen: dict[str, DeploymentView] = {}  # the Deployments as the pre-flight read them

    # -- record keeping -----------------------------------------------------------------

    def _emit(self, step: Step | None, *, progress_only: bool = False) -> None:
        if self.held is not None:
            self.held.update(self.record, soon=not progress_only)
        try:
            self.on_change(self.record, step)
        except Exception:  # a notifier's bug must never stop a rollback
            log.exception("on_change_failed")

    def step(self, name: str, message: str, *, since: float | None = None, ok: bool = True,
             warning: bool = False) -> Step:
        dur = None if since is None else round(time.monotonic() - since, 3)
        s = Step(name=name, message=message, at=self.clock(), duration_seconds=dur, ok=ok,
                 warning=warning)
        self.record = self.record.with_step(s)
        log.info("rollback_step", step=name, message=message, ok=ok, warning=warning,
                 duration=dur)
        self._emit(s)
        return s

    def phase(self, phase: Phase) -> None:
        if self.record.phase != phase:
            self.record = replace(self.record, phase=phase)
            self._emit(None)

    def progress(self, **changes: Any) -> None:
        new = replace(self.record.progress, **changes)
        if new != self.record.progress:
            self.record = replace(self.record, progress=new)
            self._emit(None, progress_only=True)

    def _check_lease(self) -> None:
        """Called before each change to the cluster."""
        if self.held is not None:
            self.held.check()  # LeaseLost once another replica took the Lease
        if self.owner is not None and self.owner.cancelling():
            # the steps run in their own task, which learns of its owner's cancellation
            # (shutdown) only at its next await; a PATCH can be sent before that await
            raise asyncio.CancelledError("the rollback's task is being cancelled")

    # -- the steps ------------------------------------------------------------------------

    async def execute(self) -> RollbackRecord:
        """Run to SUCCEEDED or FAILED; LeaseLost and cancellation propagate."""
        watch_task: asyncio.Task[tuple[Any, Any]] | None = None
        try:
            if self.resumed:
                self.step("resume", f"resumed by {self.identity} from phase "
                          f"{self.record.phase.value}, continuing from the cluster's state",
                          warning=True)
            self.phase(Phase.SCALING if not self.record.dry_run else self.record.phase)
            stable, canary = await self.preflight()
            order = self.choose(stable, canary)
            await self.detect_fight(canary)
            if self.record.dry_run:
                self.describe_dry_run(stable, canary, order)
                return await self.finish(Phase.SUCCEEDED, None)
            # the watches start once the first change is made, so they do not delay it
            if order is StepOrder.CANARY_FIRST:
                await self.scale(self.target.canary, canary, 0, "scale-canary")
                watch_task = asyncio.create_task(self.watches.acquire(self.target.namespace))
                await self.scale(self.target.stable, stable, self.target.replicas, "scale-stable")
                deploys, pods = await watch_task
                await self.verify(deploys, pods, stable)
                await self.canary_gone(deploys, pods)
            else:
                await self.scale(self.target.stable, stable, self.target.replicas, "scale-stable")
                watch_task = asyncio.create_task(self.watches.acquire(self.target.namespace))
                deploys, pods = await watch_task
                await self.verify(deploys, pods, stable)
                self._check_lease()
                await self.scale(self.target.canary, canary, 0, "scale-canary")
                await self.canary_gone(deploys, pods)
            return await self.finish(Phase.SUCCEEDED, None)
        except RollbackFailed as e:
            return await self.finish(Phase.FAILED, str(e))
        except KubeError as e:
            self.step("error", str(e), ok=False)
            return await self.finish(Phase.FAILED, str(e))
        finally:
            if watch_task is not None:
                if not watch_task.done():
                    watch_task.cancel()
                    await asyncio.wait([watch_task])
                if not watch_task.cancelled() and watch_task.exception() is None:
                    await self.watches.release(self.target.namespace)

    async def preflight(self) -> tuple[DeploymentView, DeploymentView | None]:
        t0 = time.monotonic()
        ns, t = self.target.namespace, self.target
        usable = self.prefetched is not None and all(
            not isinstance(r, BaseException) or isinstance(r, KubeError) for r in self.prefetched
        )
        if usable and self.prefetched is not None:
            stable_r, canary_r = self.prefetched  # read while the Lease was being taken
        else:
            stable_r, canary_r = await asyncio.gather(
                self.kube.read_deployment(ns, t.stable), self.kube.read_deployment(ns, t.canary),
                return_exceptions=True,
            )
        if isinstance(stable_r, BaseException):
            if not isinstance(stable_r, KubeError):
                raise stable_r
            self.step("preflight", f"stable Deployment {ns}/{t.stable} cannot be read: "
                      f"{stable_r.message}; the canary was not touched", since=t0, ok=False)
            raise RollbackFailed(f"stable Deployment {ns}/{t.stable} cannot be read: "
                                 f"{stable_r.message} ({stable_r.status} {stable_r.reason})")
        canary: DeploymentView | None
        if isinstance(canary_r, BaseException):
            if not isinstance(canary_r, KubeError):
                raise canary_r
            if not canary_r.not_found:
                self.step("preflight", f"canary Deployment {ns}/{t.canary} cannot be read: "
                          f"{canary_r.message}", since=t0, ok=False)
                raise RollbackFailed(f"canary Deployment {ns}/{t.canary} cannot be read: "
                                     f"{canary_r.message} ({canary_r.status} {canary_r.reason})")
            canary = None
        else:
            canary = deployment_view(canary_r)
        stable = deployment_view(stable_r)
        self.seen = {t.stable: stable, **({t.canary: canary} if canary is not None else {})}
        if self.record.before is None:  # the first pre-flight's view; a resumed run keeps it
            self.record = replace(self.record, before=Before(
                stable_replicas=stable.spec_replicas, canary_replicas=replicas(canary),
                stable_images=stable.images, canary_images=canary.images if canary is not None else ()))
        cpart = (f"{t.canary} has {canary.spec_replicas} replicas" if canary is not None
                 else f"{t.canary} does not exist (nothing to scale down)")
        self.step("preflight", f"{t.stable} has {stable.spec_replicas} replicas, "
                  f"{stable.ready_replicas} Ready; {cpart}", since=t0, warning=canary is None)
        self.progress(canary_replicas=replicas(canary), stable_replicas=replicas(stable),
                      stable_ready=ready_replicas(stable), stable_desired=t.replicas)
        return stable, canary

    def choose(self, stable: DeploymentView, canary: DeploymentView | None) -> StepOrder:
        if self.record.order:
            order = StepOrder(self.record.order)
            reason = f"{order.value}, as chosen when this rollback started"
        else:
            configured = self.target.step_order or self.config.settings.step_order
            order, reason = choose_order(configured, stable.ready_replicas, self.target.replicas)
            self.record = replace(self.record, order=order.value)
        if replicas(canary) in (None, 0) and stable.spec_replicas == self.target.replicas:
            self.step("order", f"already rolled back ({self.target.canary} at 0, "
                      f"{self.target.stable} at {self.target.replicas}): nothing to change, "
                      "verifying only")
        else:
            self.step("order", reason)
        return order

    async def detect_fight(self, canary: DeploymentView | None) -> None:
        """Name who scaled the canary back up after our last rollback."""
        if canary is None or canary.spec_replicas == 0 or self.held is None:
            return
        prev = next((r for r in self.held.history
                     if r.phase is Phase.SUCCEEDED and not r.dry_run and r.id != self.record.id
                     and not r.is_promotion),
                    None)
        if prev is None or prev.finished_at is None:
            return
        found = _replicas_manager(canary)
        manager = found[0] if found else "unknown"
        when = f" at {found[1].isoformat()}" if found and found[1] else ""
        self.kube.metrics.fights.labels(self.target.name, manager).inc()
        self.step(
            "fight",
            f"{self.target.canary} was scaled back up to {canary.spec_replicas} after rollback "
            f"{prev.id} finished at {prev.finished_at.isoformat()}; spec.replicas last set by "
            f"{manager}{when}. Something (a GitOps controller?) is reverting rollbacks; after "
            f"{self.config.settings.max_rollbacks_per_hour} within an hour the receiver stops.",
            warning=True,
        )

    def describe_dry_run(self, stable: DeploymentView, canary: DeploymentView | None,
                         order: StepOrder) -> None:
        c = (f"scale {self.target.canary} {canary.spec_replicas} -> 0" if canary is not None
             else f"{self.target.canary} missing")
        s = f"scale {self.target.stable} {stable.spec_replicas} -> {self.target.replicas}"
        steps = [c, s] if order is StepOrder.CANARY_FIRST else [s, "verify", c]
        self.step("dry-run", "would " + ", then ".join(steps) + "; nothing was changed")

    async def scale(self, name: str, current: DeploymentView | None, to: int, step: str) -> None:
        if current is None:
            return
        self._check_lease()
        t0 = time.monotonic()
        before = current.spec_replicas
        if before == to:
            self.step(step, f"{name} already at {to}", since=t0)
        else:
            await self.kube.scale_deployment(self.target.namespace, name, to)
            self.scale_patches += 1
            self.step(step, f"{name} scaled {before} -> {to}", since=t0)
        if name == self.target.canary:
            self.progress(canary_replicas=to)
        else:
            self.progress(stable_replicas=to)

    def timeout(self, stable: DeploymentView | None) -> float:
        """The configured verification timeout, else the stable's progressDeadlineSeconds."""
        configured = self.config.settings.verification_timeout_seconds
        if configured:
            return float(configured)
        pds = stable.progress_deadline_seconds if stable is not None else None
        return float(pds) if pds is not None and pds > 0 else DEFAULT_TIMEOUT

    async def verify(self, deploys: Any, pods: Any, stable: DeploymentView) -> None:
        self.phase(Phase.VERIFYING)
        t0 = time.monotonic()
        limit = self.timeout(stable)
        watcher = Watcher(deploys, pods, self.target.stable)

        def on_progress(v: Verification) -> None:
            self.progress(stable_ready=v.ready, stable_desired=v.desired, not_ready=v.not_ready)

        try:
            out = await wait_verified(watcher, self.target.replicas, t0 + limit, on_progress)
        finally:
            watcher.close()
        v = out.verification
        if out.missing:
            self.step("verify", f"{self.target.stable} was deleted while verifying", since=t0,
                      ok=False)
            raise RollbackFailed(f"stable Deployment {self.target.stable} was deleted")
        if v is not None and v.done:
            self.step("verify", v.message, since=t0)
            return
        if v is not None and v.failed:
            msg = v.message
        else:
            seen = v.message if v is not None else "the stable's status was never observed"
            msg = f"not verified within {limit:g} s: {seen}"
        self.step("verify", msg, since=t0, ok=False)
        raise RollbackFailed(msg)

    async def canary_gone(self, deploys: Any, pods: Any) -> None:
        if not self.config.settings.wait_for_canary_pods_gone:
            return
        t0 = time.monotonic()
        watcher = Watcher(deploys, pods, self.target.canary)
        try:
            gone = await wait_pods_gone(
                watcher, t0 + self.timeout(None),
                lambda n: self.progress(canary_pods=n),
            )
        finally:
            watcher.close()
        if not gone:
            msg = f"{self.target.canary} still has {len(watcher.pods)} pods"
            self.step("canary-gone", msg, since=t0, ok=False)
            raise RollbackFailed(msg)
        self.step("canary-gone", f"{self.target.canary} has no pods left", since=t0)

    # -- outcome ------------------------------------------------------------------------------

    async def finish(self, phase: Phase, error: str | None) -> RollbackRecord:
        self.record = replace(self.record, phase=phase, error=error, finished_at=self.clock())
        outcome = "succeeded" if phase is Phase.SUCCEEDED else "failed"
        if not self.record.dry_run:
            await self.record_in_cluster()
        if not self.record.is_promotion:
            self.kube.metrics.rollbacks_finished.labels(self.target.name, outcome).inc()
            self.kube.metrics.rollback_duration.labels(self.target.name, outcome).observe(
                time.monotonic() - self.started)
        log.info(f"{self.record.kind}_finished", outcome=outcome, error=error,
                 duration=round(time.monotonic() - self.started, 3))
        if self.held is not None:
            history = with_history(self.held.history, self.record)
            try:
                await self.held.release(self.record, history)
            except (KubeError, LeaseLost) as e:
                log.error("lease_release_failed", error=str(e))
        self._emit(None)
        return self.record

    async def record_in_cluster(self) -> None:
        """Annotate both Deployments and post an Event on each; failures only warn."""
        t0 = time.monotonic()
        ann = last_rollback_annotation(self.record)
        ok = self.record.phase is Phase.SUCCEEDED
        ns, t = self.target.namespace, self.target
        notes = self.outcome_notes(ok)
        calls: list[Coroutine[Any, Any, object]] = []
        for name in (t.canary, t.stable):
            if not self.already_recorded(name):
                calls.append(self.kube.annotate_deployment(ns, name, {self.ANNOTATION: ann}))
            calls.append(self.post_event(self.event_body(name, notes[name], ok)))
        results = await asyncio.gather(*calls, return_exceptions=True)
        problems = sorted({str(r) for r in results if isinstance(r, KubeError)
                           and not r.not_found})
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, KubeError):
                raise r
        if problems:
            self.step("record", "could not record the outcome on the Deployments: "
                      + "; ".join(problems), since=t0, warning=True)

    def outcome_notes(self, ok: bool) -> dict[str, str]:
        """The Event note per Deployment."""
        t = self.target
        return {
            t.canary: f"Rolled back by {self.identity} ({self.record.id}): {self.record.reason}",
            t.stable: (f"Serving again after rollback {self.record.id}: "
                       f"{self.record.progress.stable_ready}/{t.replicas} Ready"
                       if ok else f"Rollback {self.record.id} failed: {self.record.error}"),
        }

    def already_recorded(self, name: str) -> bool:
        """A receiver that died after annotating this outcome left it on the Deployment."""
        seen = self.seen.get(name)
        ann = (seen.annotations if seen is not None else None) or {}
        try:
            last = json.loads(ann.get(self.ANNOTATION) or "{}")
        except ValueError:
            return False
        return isinstance(last, dict) and (last.get("id"), last.get("outcome")) == (
            self.record.id, self.record.phase.value)

    async def post_event(self, body: Obj) -> None:
        """Create the outcome Event. Its name is fixed per rollback and outcome, so a
        resumed run, or a repeated POST whose answer was lost, finds it there (409)
        instead of posting it twice."""
        ns = self.target.namespace
        try:
            await self.kube.call(f"create events {ns}", self.kube.events.create_namespaced_event,
                                 ns, body, retry_conflict=False)
        except KubeError as e:
            if not e.conflict:
                raise

    def event_body(self, name: str, note: str, ok: bool) -> Obj:
        suffix = f".{self.EVENT_SLUG}-{self.record.id}-{'succeeded' if ok else 'failed'}"
        return {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name[: 253 - len(suffix)].rstrip(".-") + suffix,
                         "namespace": self.target.namespace},
            "eventTime": micro_time(self.clock()),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.identity[:128],
            "action": self.EVENT_ACTION,
            "reason": self.EVENT_REASONS[0] if ok else self.EVENT_REASONS[1],
            "note": note[:1024],
            "type": "Normal" if ok else "Warning",
            "regarding": {"apiVersion": "apps/v1", "kind": "Deployment",
                          "namespace": self.target.namespace, "name": name},
        }
