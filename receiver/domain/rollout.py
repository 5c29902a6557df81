"""kubectl rollout-status semantics and pod readiness, as pure functions over API dicts.

The executor hands in Deployments and Pods in the API's own JSON shape (camelCase, as
``ApiClient.sanitize_for_serialization`` returns them), so these functions read
exactly what ``kubectl get -o json`` shows and can be tested with literal dicts.

rollout_status() reproduces kubectl's DeploymentStatusViewer (kubectl
pkg/polymorphichelpers/rollout_status.go), messages included, so the timeline says
what an operator running ``kubectl rollout status`` would see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from receiver.domain.settings import StepOrder

Obj = Mapping[str, Any]

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


def _get(obj: Obj | None, *path: str) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) else 0


def _name(obj: Obj) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _condition(obj: Obj, kind: str) -> Obj | None:
    for cond in _get(obj, "status", "conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return None


def rollout_status(deployment: Obj) -> RolloutStatus:
    """What ``kubectl rollout status deployment/NAME`` would say right now."""
    name = _name(deployment)
    generation = _int(_get(deployment, "metadata", "generation"))
    status = _get(deployment, "status") or {}
    observed = _int(status.get("observedGeneration"))
    if generation > observed:
        return RolloutStatus(False, False, "Waiting for deployment spec update to be observed...")
    progressing = _condition(deployment, "Progressing")
    if progressing is not None and progressing.get("reason") == TIMED_OUT_REASON:
        return RolloutStatus(False, True, f'deployment "{name}" exceeded its progress deadline')
    spec_replicas = _get(deployment, "spec", "replicas")
    replicas = _int(status.get("replicas"))
    updated = _int(status.get("updatedReplicas"))
    available = _int(status.get("availableReplicas"))
    if isinstance(spec_replicas, int) and updated < spec_replicas:
        return RolloutStatus(
            False,
            False,
            f'Waiting for deployment "{name}" rollout to finish: {updated} out of '
            f"{spec_replicas} new replicas have been updated...",
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


def pod_ready(pod: Obj) -> bool:
    """The pod's Ready condition is True (every container ready, readiness gates passed)."""
    cond = _condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_terminating(pod: Obj) -> bool:
    """Being deleted (deletionTimestamp set), as kubectl shows 'Terminating'."""
    return _get(pod, "metadata", "deletionTimestamp") is not None


def pod_finished(pod: Obj) -> bool:
    """Succeeded or Failed (e.g. evicted): will never serve again, its ReplicaSet replaces it."""
    return _get(pod, "status", "phase") in ("Succeeded", "Failed")


def _container_problem(statuses: Iterable[Obj], prefix: str = "") -> str | None:
    statuses = list(statuses)
    many = len(statuses) > 1
    for cs in statuses:
        if cs.get("ready"):
            continue
        label = f"{cs.get('name')}: " if many else ""
        restarts = _int(cs.get("restartCount"))
        waiting = _get(cs, "state", "waiting")
        if isinstance(waiting, Mapping) and waiting.get("reason"):
            reason = str(waiting["reason"])
            if reason == "CrashLoopBackOff":
                return f"{label}{prefix}{reason} (restarts {restarts})"
            if reason in ("ContainerCreating", "PodInitializing"):
                return f"{label}{prefix}{reason}"
            message = waiting.get("message")
            if message and reason not in ("ImagePullBackOff", "ErrImagePull"):
                return f"{label}{prefix}{reason}: {message}"
            return f"{label}{prefix}{reason}"
        terminated = _get(cs, "state", "terminated")
        if isinstance(terminated, Mapping):
            reason = terminated.get("reason") or "terminated"
            code = terminated.get("exitCode")
            return f"{label}{prefix}{reason} (exit code {code}, restarts {restarts})"
        if _get(cs, "state", "running") is not None:
            if cs.get("started") is False:
                return f"{label}{prefix}starting (startup probe not passed yet)"
            if prefix:
                return f"{label}{prefix}running"
            return f"{label}readiness probe failing"
    return None


def why_not_ready(pod: Obj) -> str:
    """A short reason for an operator: 'CrashLoopBackOff (restarts 3)', 'not scheduled: ...'."""
    if pod_terminating(pod):
        return "terminating"
    phase = _get(pod, "status", "phase")
    if phase in ("Succeeded", "Failed"):
        reason = _get(pod, "status", "reason")
        return f"{phase.lower()}" + (f" ({reason})" if reason else "")
    if pod_ready(pod):
        return "ready"
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        detail = scheduled.get("message") or scheduled.get("reason") or "no node fits"
        return f"not scheduled: {detail}"
    init = _container_problem(_get(pod, "status", "initContainerStatuses") or (), "Init:")
    if init is not None:
        return init
    problem = _container_problem(_get(pod, "status", "containerStatuses") or ())
    if problem is not None:
        return problem
    ready = _condition(pod, "Ready")
    if ready is not None and ready.get("message"):
        return str(ready["message"])
    return str(phase or "pending").lower() if phase != "Running" else "not ready"


def _selector_matches(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a pod's labels."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op = expr.get("key"), expr.get("operator")
        values = expr.get("values") or ()
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def stable_verified(deployment: Obj, pods: Sequence[Obj]) -> Verification:
    """Rolled out (kubectl's rules) AND every live pod it selects is Ready.

    Pods that are terminating or finished (Succeeded/Failed, e.g. evicted) are not
    counted: they will never serve, and the ReplicaSet replaces them. Pods the
    Deployment's selector does not select are ignored, so the caller may pass a wider
    list. At least spec.replicas pods must be Ready, so a pod list that lags behind the
    Deployment's status cannot pass early.
    """
    name = _name(deployment)
    spec_replicas = _get(deployment, "spec", "replicas")
    desired = spec_replicas if isinstance(spec_replicas, int) else 1
    selector = _get(deployment, "spec", "selector")
    live = [
        p
        for p in pods
        if _selector_matches(selector, _get(p, "metadata", "labels") or {})
        and not pod_terminating(p)
        and not pod_finished(p)
    ]
    ready = sum(1 for p in live if pod_ready(p))
    not_ready = tuple(sorted(f"{_name(p)}: {why_not_ready(p)}" for p in live if not pod_ready(p)))
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
