"""Server-side printing: meta.k8s.io/v1 Table answers, which kubectl get asks for.

Columns and cells follow pkg/printers/internalversion/printers.go (the server always
generates the wide cells; kubectl hides priority>0 columns unless -o wide).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import clock, selectors

Obj = dict[str, Any]
Column = tuple[str, str, str, int]  # name, type, format, priority


def _age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    return clock.human_duration((clock.now() - clock.parse_time(ts)).total_seconds())


def _pod_row(p: Obj) -> list[Any]:
    spec = p.get("spec") or {}
    st = p.get("status") or {}
    containers = spec.get("containers") or []
    statuses = st.get("containerStatuses") or []
    reason = st.get("reason") or st.get("phase") or "Pending"
    restarts = 0
    ready = 0
    last_restart: str | None = None
    for cs in reversed(statuses):
        restarts += int(cs.get("restartCount", 0))
        term = (cs.get("lastState") or {}).get("terminated")
        if term and term.get("finishedAt") and (last_restart is None or term["finishedAt"] > last_restart):
            last_restart = term["finishedAt"]
        state = cs.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif cs.get("ready") and "running" in state:
            ready += 1
    if p["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts_cell = str(restarts)
    if last_restart:
        restarts_cell = f"{restarts} ({_age(last_restart)} ago)"
    return [
        p["metadata"]["name"],
        f"{ready}/{len(containers)}",
        reason,
        restarts_cell,
        _age(p["metadata"].get("creationTimestamp")),
        st.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        st.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


def _containers(template_spec: Obj) -> tuple[str, str]:
    cs = template_spec.get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _selector(spec: Obj) -> str:
    return selectors.format_selector(selectors.selector_from_label_selector(spec.get("selector"))) or "<none>"


def _deploy_row(d: Obj) -> list[Any]:
    spec = d.get("spec") or {}
    st = d.get("status") or {}
    names, images = _containers((spec.get("template") or {}).get("spec") or {})
    return [
        d["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        _age(d["metadata"].get("creationTimestamp")),
        names,
        images,
        _selector(spec),
    ]


def _rs_row(rs: Obj) -> list[Any]:
    spec = rs.get("spec") or {}
    st = rs.get("status") or {}
    names, images = _containers((spec.get("template") or {}).get("spec") or {})
    return [
        rs["metadata"]["name"],
        spec.get("replicas", 0),
        st.get("replicas", 0),
        st.get("readyReplicas", 0),
        _age(rs["metadata"].get("creationTimestamp")),
        names,
        images,
        _selector(spec),
    ]


def _event_row(e: Obj) -> list[Any]:
    first = _age(e.get("firstTimestamp")) if e.get("firstTimestamp") else _age(e.get("eventTime"))
    last = _age(e.get("lastTimestamp")) if e.get("lastTimestamp") else first
    count = e.get("count") or 1
    if e.get("series"):
        last = _age(e["series"].get("lastObservedTime"))
        count = e["series"].get("count", count)
    inv = e.get("involvedObject") or {}
    target = f"{inv.get('kind', '').lower()}/{inv['name']}" if inv.get("name") else inv.get("kind", "").lower()
    src = e.get("source") or {}
    component = src.get("component") or e.get("reportingComponent", "")
    host = src.get("host") or e.get("reportingInstance", "")
    source = f"{component}, {host}" if host else component
    return [
        last,
        e.get("type", ""),
        e.get("reason", ""),
        target,
        inv.get("fieldPath", ""),
        source,
        (e.get("message") or "").strip(),
        first,
        count,
        e["metadata"]["name"],
    ]


def _ns_row(n: Obj) -> list[Any]:
    return [
        n["metadata"]["name"],
        (n.get("status") or {}).get("phase", ""),
        _age(n["metadata"].get("creationTimestamp")),
    ]


def _lease_row(lease: Obj) -> list[Any]:
    holder = (lease.get("spec") or {}).get("holderIdentity") or "<none>"
    return [lease["metadata"]["name"], holder, _age(lease["metadata"].get("creationTimestamp"))]


def _config_map_row(cm: Obj) -> list[Any]:
    count = len(cm.get("data") or {}) + len(cm.get("binaryData") or {})
    return [cm["metadata"]["name"], count, _age(cm["metadata"].get("creationTimestamp"))]


def _default_row(o: Obj) -> list[Any]:
    return [o["metadata"]["name"], o["metadata"].get("creationTimestamp")]


NAME: Column = ("Name", "string", "name", 0)
AGE: Column = ("Age", "string", "", 0)
PRINTERS: dict[str, tuple[list[Column], Callable[[Obj], list[Any]]]] = {
    "pods": (
        [
            NAME,
            ("Ready", "string", "", 0),
            ("Status", "string", "", 0),
            ("Restarts", "string", "", 0),
            AGE,
            ("IP", "string", "", 1),
            ("Node", "string", "", 1),
            ("Nominated Node", "string", "", 1),
            ("Readiness Gates", "string", "", 1),
        ],
        _pod_row,
    ),
    "deployments": (
        [
            NAME,
            ("Ready", "string", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        _deploy_row,
    ),
    "replicasets": (
        [
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        _rs_row,
    ),
    "events": (
        [
            ("Last Seen", "string", "", 0),
            ("Type", "string", "", 0),
            ("Reason", "string", "", 0),
            ("Object", "string", "", 0),
            ("Subobject", "string", "", 1),
            ("Source", "string", "", 1),
            ("Message", "string", "", 0),
            ("First Seen", "string", "", 1),
            ("Count", "string", "", 1),
            ("Name", "string", "", 1),
        ],
        _event_row,
    ),
    "namespaces": ([NAME, ("Status", "string", "", 0), AGE], _ns_row),
    "leases": ([NAME, ("Holder", "string", "", 0), AGE], _lease_row),
    "configmaps": ([NAME, ("Data", "string", "", 0), AGE], _config_map_row),
}
DEFAULT: tuple[list[Column], Callable[[Obj], list[Any]]] = ([NAME, ("Created At", "date", "", 0)], _default_row)


def wants_table(accept: str | None) -> bool:
    return bool(accept) and "as=Table" in (accept or "")


def table(
    plural: str,
    objs: list[Obj],
    resource_version: str,
    include_object: str = "Metadata",
    api_version: str = "v1",
    kind: str = "",
    with_headers: bool = True,
) -> Obj:
    columns, row_fn = PRINTERS.get(plural, DEFAULT)
    rows = []
    for o in objs:
        if include_object == "None":
            embedded: Obj | None = None
        elif include_object == "Object":
            embedded = {"kind": kind, "apiVersion": api_version, **o}
        else:
            embedded = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
        rows.append({"cells": row_fn(o), "object": embedded})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"name": n, "type": t, "format": f, "description": "", "priority": p} for n, t, f, p in columns
        ]
        if with_headers
        else [],
        "rows": rows,
    }
