"""kubectl rollout-status semantics and pod readiness, as pure functions over typed views.

The adapters turn the API's JSON (what ``kubectl get -o json`` shows) into
DeploymentView / PodView once (receiver.domain.kube_views); these rules read their
typed fields, and tests build them from literal dicts with deployment_view/pod_view.

rollout_status() reproduces kubectl's DeploymentStatusViewer (kubectl
pkg/polymorphichelpers/rollout_status.go), messages included, so the timeline says
what an operator running ``kubectl rollout status`` would see.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from receiver.domain.kube_views import ContainerStatus, DeploymentView, PodView
from receiver.domain.settings import StepOrder

#: The Progressing condition reason kubectl treats as a failed rollout.
TIMED_OUT_REASON = "ProgressDeadlineExceeded"


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """kubectl's verdict: done, failed (progress deadline exceeded), and its message."""

    done: bool
    failed: bool
    message: str


@dataclass(frozen=True, slots=True)
class Verification:
    """Is the stable serving: rolled out and every live pod Ready."""

    done: bool
    failed: bool
    message: str
    not_ready: tuple[str, ...] = ()  # "pod-name: CrashLoopBackOff (restarts 3)"
    ready: int = 0
    desired: int = 0


def rollout_status(deployment: DeploymentView) -> RolloutStatus:
    """What ``kubectl rollout status deployment/NAME`` would say right now."""
    d = deployment
    name = d.name
    if d.generation > d.observed_generation:
        return RolloutStatus(False, False, "Waiting for deployment spec update to be observed...")
    progressing = d.condition("Progressing")
    if progressing is not None and progressing.reason == TIMED_OUT_REASON:
        return RolloutStatus(False, True, f'deployment "{name}" exceeded its progress deadline')
    updated, replicas, available = d.updated_replicas, d.status_replicas, d.available_replicas
    if updated < d.spec_replicas:
        return RolloutStatus(
            False,
            False,
            f'Waiting for deployment "{name}" rollout to finish: {updated} out of '
            f"{d.spec_replicas} new replicas have been updated...",
        )
    if replicas > updated:
        return RolloutStatus(
            False,
            False,
            f'Waiting for deployment "{name}" rollout to finish: {replicas - updated} old '
            "replicas are pending termination...",
        )
    if available < updated:
        return RolloutStatus(
            False,
            False,
            f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} '
            "updated replicas are available...",
        )
    return RolloutStatus(True, False, f'deployment "{name}" successfully rolled out')


def _container_problem(statuses: Sequence[ContainerStatus], prefix: str = "") -> str | None:
    many = len(statuses) > 1
    for cs in statuses:
        if cs.ready:
            continue
        label = f"{cs.name}: " if many else ""
        restarts = cs.restart_count
        if cs.waiting_reason:
            reason = cs.waiting_reason
            if reason == "CrashLoopBackOff":
                return f"{label}{prefix}{reason} (restarts {restarts})"
            if reason in ("ContainerCreating", "PodInitializing"):
                return f"{label}{prefix}{reason}"
            message = cs.waiting_message
            if message and reason not in ("ImagePullBackOff", "ErrImagePull"):
                return f"{label}{prefix}{reason}: {message}"
            return f"{label}{prefix}{reason}"
        if cs.terminated:
            reason = cs.terminated_reason or "terminated"
            return f"{label}{prefix}{reason} (exit code {cs.exit_code}, restarts {restarts})"
        if cs.running:
            if cs.started is False:
                return f"{label}{prefix}starting (startup probe not passed yet)"
            if prefix:
                return f"{label}{prefix}running"
            return f"{label}readiness probe failing"
    return None


def why_not_ready(pod: PodView) -> str:
    """A short reason for an operator: 'CrashLoopBackOff (restarts 3)', 'not scheduled: ...'."""
    if pod.terminating:
        return "terminating"
    phase = pod.phase
    if phase in ("Succeeded", "Failed"):
        return f"{phase.lower()}" + (f" ({pod.reason})" if pod.reason else "")
    if pod.ready:
        return "ready"
    scheduled = pod.condition("PodScheduled")
    if scheduled is not None and scheduled.status == "False":
        detail = scheduled.message or scheduled.reason or "no node fits"
        return f"not scheduled: {detail}"
    init = _container_problem(pod.init_containers, "Init:")
    if init is not None:
        return init
    problem = _container_problem(pod.containers)
    if problem is not None:
        return problem
    ready = pod.condition("Ready")
    if ready is not None and ready.message:
        return ready.message
    return str(phase or "pending").lower() if phase != "Running" else "not ready"


def stable_verified(deployment: DeploymentView, pods: Iterable[PodView]) -> Verification:
    """Rolled out (kubectl's rules) AND every live pod it selects is Ready.

    Pods that are terminating or finished (Succeeded/Failed, e.g. evicted) are not
    counted: they will never serve, and the ReplicaSet replaces them. Pods the
    Deployment's selector does not select are ignored, so the caller may pass a wider
    list (a Deployment without a usable selector selects none). At least spec.replicas
    pods must be Ready, so a pod list that lags behind the Deployment's status cannot
    pass early.
    """
    name = deployment.name
    desired = deployment.spec_replicas
    live = [p for p in pods if deployment.selects(p) and not p.terminating and not p.finished]
    ready = sum(1 for p in live if p.ready)
    not_ready = tuple(sorted(f"{p.name}: {why_not_ready(p)}" for p in live if not p.ready))
    status = rollout_status(deployment)
    if not status.done:
        extra = f"; not ready: {', '.join(not_ready)}" if not_ready else ""
        return Verification(False, status.failed, status.message + extra, not_ready, ready, desired)
    if not_ready or ready < desired:
        detail = f": {', '.join(not_ready)}" if not_ready else ""
        return Verification(
            False,
            False,
            f'deployment "{name}" rolled out but {ready} of {desired} pods are Ready{detail}',
            not_ready,
            ready,
            desired,
        )
    return Verification(
        True,
        False,
        f'deployment "{name}" successfully rolled out and all {ready} pods are Ready',
        (),
        ready,
        desired,
    )


def choose_order(configured: StepOrder, stable_ready: int, full: int) -> tuple[StepOrder, str]:
    """Which Deployment to scale first, with the sentence the timeline shows.

    ``auto`` follows the runbook (canary first: stop the bad version's traffic at once)
    only while the stable already carries at least half the full count Ready; with less
    (weeks 3 and 4 of the rollout: 1 or 0 pods) the runbook's order would leave too
    little serving while v1 starts, so the stable is scaled up and verified first.
    """
    have = f"the stable has {stable_ready} of {full} pods Ready"
    if configured is StepOrder.CANARY_FIRST:
        warn = f"; note: {have}, so capacity is short until it scales up" if stable_ready * 2 < full else ""
        return StepOrder.CANARY_FIRST, f"canary first, as configured{warn}"
    if configured is StepOrder.STABLE_FIRST:
        return StepOrder.STABLE_FIRST, f"stable first, as configured ({have})"
    if stable_ready * 2 >= full:
        return (
            StepOrder.CANARY_FIRST,
            f"canary first (the runbook's order): {have}, at least half, so the canary's traffic is stopped at once",
        )
    return (
        StepOrder.STABLE_FIRST,
        f"stable first: {have}, less than half, so it is scaled up and verified before "
        "the canary goes to 0, to keep the service answering",
    )
