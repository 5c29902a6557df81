"""Views of stored objects in other shapes: the Scale subresource and the two Event APIs.

Core v1 and events.k8s.io/v1 Events are one stored object (as in the real server); the
core form is stored and events.k8s.io/v1 is converted on the way in and out.
"""

from __future__ import annotations

from typing import Any

from . import selectors

Obj = dict[str, Any]


def scale_of(deployment: Obj) -> Obj:
    """autoscaling/v1 Scale of a Deployment; spec.replicas omitted when zero (omitempty)."""
    meta = deployment["metadata"]
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    scale_spec: Obj = {}
    if spec.get("replicas"):
        scale_spec["replicas"] = spec["replicas"]
    reqs = selectors.selector_from_label_selector(spec.get("selector"))
    scale_status: Obj = {"replicas": status.get("replicas", 0)}
    sel = selectors.format_selector(reqs)
    if sel:
        scale_status["selector"] = sel
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": scale_spec,
        "status": scale_status,
    }


# events.k8s.io/v1 field -> core v1 field
_EV1_TO_CORE = {
    "regarding": "involvedObject",
    "note": "message",
    "related": "related",
    "reportingController": "reportingComponent",
    "reportingInstance": "reportingInstance",
    "series": "series",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
    "eventTime": "eventTime",
    "action": "action",
    "reason": "reason",
    "type": "type",
}
_CORE_TO_EV1 = {v: k for k, v in _EV1_TO_CORE.items()}


def event_to_core(ev: Obj) -> Obj:
    out: Obj = {"kind": "Event", "apiVersion": "v1", "metadata": dict(ev.get("metadata") or {})}
    for k, v in ev.items():
        if k in _EV1_TO_CORE and v not in (None, "", {}, 0):
            out[_EV1_TO_CORE[k]] = v
    out.setdefault("involvedObject", {})
    out.setdefault("source", {})
    return out


def event_from_core(core: Obj) -> Obj:
    out: Obj = {
        "kind": "Event",
        "apiVersion": "events.k8s.io/v1",
        "metadata": dict(core.get("metadata") or {}),
    }
    for k, v in core.items():
        if k in _CORE_TO_EV1 and v not in (None, "", {}, 0):
            out[_CORE_TO_EV1[k]] = v
    if "eventTime" not in out:
        out["eventTime"] = None  # always serialised by events.k8s.io/v1 (not omitempty)
    return out


def core_event_defaults(core: Obj) -> None:
    """Fields the core v1 API always serialises."""
    core.setdefault("involvedObject", {})
    core.setdefault("source", {})
    core.setdefault("reportingComponent", core.get("reportingComponent", ""))
    core.setdefault("reportingInstance", core.get("reportingInstance", ""))
    core.setdefault("firstTimestamp", None)
    core.setdefault("lastTimestamp", None)
    core.setdefault("eventTime", None)
