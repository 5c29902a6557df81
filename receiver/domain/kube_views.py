"""Typed, read-only views of the Kubernetes objects the receiver reads.

The API hands us JSON dicts; reading them through ``.get("spec") or {}`` chains in
every module let the same field mean different things in different places (a missing
Deployment had 0 replicas in one module and None in another). The adapters build a
view ONCE per object version (receiver.kube.Mirror.view, or right after a GET), and the
domain's rules read typed fields. The raw dict stays only where we write back.

Rules that live here, and only here:

- replicas: a missing Deployment has ``None`` replicas ("not there", never 0); a
  Deployment without ``spec.replicas`` has 1, as the API server defaults it.
- a Deployment's selector: apps/v1 requires a non-empty one, so a Deployment read
  without one (or with ``{}``) selects NO pods rather than the whole namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from receiver.domain.selectors import LabelSelector, selects

Obj = Mapping[str, Any]

#: What the API server fills in for a Deployment created without spec.replicas.
DEFAULT_REPLICAS = 1


def _get(obj: Any, *path: str) -> Any:
    cur = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) else 0


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) else None


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str | None = None
    message: str | None = None


def _conditions(obj: Obj) -> tuple[Condition, ...]:
    return tuple(
        Condition(str(c.get("type") or ""), str(c.get("status") or ""),
                  c.get("reason") or None, c.get("message") or None)
        for c in _get(obj, "status", "conditions") or () if isinstance(c, Mapping)
    )


def _find(conditions: tuple[Condition, ...], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    """One entry of status.(init)containerStatuses, as far as readiness reasons need it."""

    name: str
    ready: bool
    started: bool | None
    restart_count: int
    running: bool
    waiting_reason: str | None = None
    waiting_message: str | None = None
    terminated: bool = False
    terminated_reason: str | None = None
    exit_code: int | None = None


def _container(cs: Obj) -> ContainerStatus:
    waiting = _get(cs, "state", "waiting")
    terminated = _get(cs, "state", "terminated")
    started = cs.get("started")
    return ContainerStatus(
        name=str(cs.get("name") or ""),
        ready=bool(cs.get("ready")),
        started=started if isinstance(started, bool) else None,
        restart_count=_int(cs.get("restartCount")),
        running=_get(cs, "state", "running") is not None,
        waiting_reason=(str(waiting["reason"]) if isinstance(waiting, Mapping)
                        and waiting.get("reason") else None),
        waiting_message=(waiting.get("message") or None) if isinstance(waiting, Mapping) else None,
        terminated=isinstance(terminated, Mapping),
        terminated_reason=(terminated.get("reason") or None) if isinstance(terminated, Mapping) else None,
        exit_code=terminated.get("exitCode") if isinstance(terminated, Mapping) else None,
    )


@dataclass(frozen=True, slots=True)
class PodView:
    name: str
    labels: Mapping[str, str]
    phase: str | None
    reason: str | None  # status.reason, e.g. "Evicted"
    deleting: bool  # metadata.deletionTimestamp is set
    conditions: tuple[Condition, ...] = ()
    init_containers: tuple[ContainerStatus, ...] = ()
    containers: tuple[ContainerStatus, ...] = ()

    def condition(self, kind: str) -> Condition | None:
        return _find(self.conditions, kind)

    @property
    def ready(self) -> bool:
        """The Ready condition is True (every container ready, readiness gates passed)."""
        cond = self.condition("Ready")
        return cond is not None and cond.status == "True"

    @property
    def terminating(self) -> bool:
        """Being deleted, as kubectl shows 'Terminating'."""
        return self.deleting

    @property
    def finished(self) -> bool:
        """Succeeded or Failed (e.g. evicted): will never serve again."""
        return self.phase in ("Succeeded", "Failed")


def pod_view(obj: Obj) -> PodView:
    """Build a PodView from the API's JSON shape (camelCase)."""
    phase = _get(obj, "status", "phase")
    reason = _get(obj, "status", "reason")
    return PodView(
        name=str(_get(obj, "metadata", "name") or ""),
        labels=_str_map(_get(obj, "metadata", "labels")),
        phase=str(phase) if phase else None,
        reason=str(reason) if reason else None,
        deleting=_get(obj, "metadata", "deletionTimestamp") is not None,
        conditions=_conditions(obj),
        init_containers=tuple(_container(c) for c in _get(obj, "status", "initContainerStatuses") or ()
                              if isinstance(c, Mapping)),
        containers=tuple(_container(c) for c in _get(obj, "status", "containerStatuses") or ()
                         if isinstance(c, Mapping)),
    )


@dataclass(frozen=True, slots=True)
class FieldOwner:
    """A managedFields entry that owns spec.replicas."""

    manager: str
    time: str | None


@dataclass(frozen=True, slots=True)
class DeploymentView:
    name: str
    namespace: str
    generation: int
    observed_generation: int
    spec_replicas: int  # a missing spec.replicas is DEFAULT_REPLICAS, as the API server sets it
    status_replicas: int
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    conditions: tuple[Condition, ...] = ()
    selector: LabelSelector | None = None  # None: selects no pods (see the module's doc)
    template_labels: Mapping[str, str] | None = None
    images: tuple[str, ...] = ()
    annotations: Mapping[str, str] | None = None
    resource_version: str | None = None
    progress_deadline_seconds: int | float | None = None
    replicas_owners: tuple[FieldOwner, ...] = ()

    def condition(self, kind: str) -> Condition | None:
        return _find(self.conditions, kind)

    def selects(self, pod: PodView) -> bool:
        return selects(self.selector, pod.labels)


def _spec_replicas(value: Any) -> int:
    """Missing means the API server's default; anything but an integer is refused, as
    no API server sends one (a rollback must not guess how many pods to run)."""
    if value is None:
        return DEFAULT_REPLICAS
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"spec.replicas is not an integer: {value!r}")
    return value


def deployment_view(obj: Obj) -> DeploymentView:
    """Build a DeploymentView from the API's JSON shape (camelCase)."""
    spec_replicas = _get(obj, "spec", "replicas")
    raw_selector = _get(obj, "spec", "selector")
    selector = LabelSelector.parse(raw_selector) if isinstance(raw_selector, Mapping) else None
    if selector is not None and selector.empty:
        selector = None  # apps/v1 rejects it; never select the whole namespace
    pds = _get(obj, "spec", "progressDeadlineSeconds")
    owners = []
    for entry in _get(obj, "metadata", "managedFields") or ():
        if isinstance(entry, Mapping) and "f:replicas" in (_get(entry, "fieldsV1", "f:spec") or {}):
            owners.append(FieldOwner(str(entry.get("manager") or "unknown"), entry.get("time") or None))
    rv = _get(obj, "metadata", "resourceVersion")
    return DeploymentView(
        name=str(_get(obj, "metadata", "name") or ""),
        namespace=str(_get(obj, "metadata", "namespace") or ""),
        generation=_int(_get(obj, "metadata", "generation")),
        observed_generation=_int(_get(obj, "status", "observedGeneration")),
        spec_replicas=_spec_replicas(spec_replicas),
        status_replicas=_int(_get(obj, "status", "replicas")),
        updated_replicas=_int(_get(obj, "status", "updatedReplicas")),
        ready_replicas=_int(_get(obj, "status", "readyReplicas")),
        available_replicas=_int(_get(obj, "status", "availableReplicas")),
        conditions=_conditions(obj),
        selector=selector,
        template_labels=_str_map(_get(obj, "spec", "template", "metadata", "labels")),
        images=tuple(str(c.get("image") or "") for c in _get(obj, "spec", "template", "spec", "containers") or ()
                     if isinstance(c, Mapping)),
        annotations=_str_map(_get(obj, "metadata", "annotations")),
        resource_version=str(rv) if rv else None,
        progress_deadline_seconds=pds if isinstance(pds, int | float) and not isinstance(pds, bool) else None,
        replicas_owners=tuple(owners),
    )


def replicas(deployment: DeploymentView | None) -> int | None:
    """THE replicas rule: a missing Deployment is None ("not there"), never 0."""
    return None if deployment is None else deployment.spec_replicas


def ready_replicas(deployment: DeploymentView | None) -> int | None:
    """status.readyReplicas, None when the Deployment is missing."""
    return None if deployment is None else deployment.ready_replicas
