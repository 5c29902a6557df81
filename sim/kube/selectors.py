"""Label and field selectors, parsed as k8s.io/apimachinery/pkg/labels and fields parse them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !exists
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        # != and notin match when the label is absent, as in Kubernetes.
        return labels.get(self.key) not in self.values


_TOKEN = re.compile(r"\s*(\(|\)|,|!=|==|=|!|[^\s(),!=]+)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise bad_request(f"unable to parse requirement: invalid label selector: {text!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k`; raise 400 as the server does."""
    if not text or not text.strip():
        return []
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def fail() -> ApiError:
        return bad_request(f"unable to parse requirement: found '{text}', expected: identifier")

    while i < len(toks):
        if toks[i] == "!":
            if i + 1 >= len(toks):
                raise fail()
            reqs.append(Requirement(toks[i + 1], "!exists"))
            i += 2
        else:
            key = toks[i]
            if key in ("(", ")", ",", "=", "==", "!="):
                raise fail()
            nxt = toks[i + 1] if i + 1 < len(toks) else ","
            if nxt == ",":
                reqs.append(Requirement(key, "exists"))
                i += 1
            elif nxt in ("=", "==", "!="):
                value = toks[i + 2] if i + 2 < len(toks) and toks[i + 2] != "," else ""
                reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", (value,)))
                i += 3 if value else 2
            elif nxt in ("in", "notin"):
                if i + 2 >= len(toks) or toks[i + 2] != "(":
                    raise fail()
                j = i + 3
                values: list[str] = []
                while j < len(toks) and toks[j] != ")":
                    if toks[j] != ",":
                        values.append(toks[j])
                    j += 1
                if j >= len(toks):
                    raise fail()
                reqs.append(Requirement(key, nxt, tuple(values)))
                i = j + 1
            else:
                raise fail()
        if i < len(toks):
            if toks[i] != ",":
                raise fail()
            i += 1
    return reqs


def matches_labels(reqs: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def equalities(reqs: list[Requirement]) -> list[tuple[str, str]]:
    """The label=value pairs every match must carry (what a label index can look up)."""
    return [(r.key, r.values[0]) for r in reqs if r.op in ("=", "in") and len(r.values) == 1]


def selector_from_label_selector(sel: Mapping[str, Any] | None) -> list[Requirement]:
    """metav1.LabelSelector (matchLabels + matchExpressions) as requirements."""
    if not sel:
        return []
    reqs = [Requirement(k, "=", (v,)) for k, v in sorted((sel.get("matchLabels") or {}).items())]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for e in sel.get("matchExpressions") or []:
        reqs.append(Requirement(e["key"], ops[e["operator"]], tuple(e.get("values") or ())))
    return reqs


def format_selector(reqs: list[Requirement]) -> str:
    """labels.Selector.String(): what Scale.status.selector carries."""
    parts = []
    for r in sorted(reqs, key=lambda r: r.key):
        if r.op == "=":
            parts.append(f"{r.key}={r.values[0]}")
        elif r.op == "!=":
            parts.append(f"{r.key}!={r.values[0]}")
        elif r.op == "exists":
            parts.append(r.key)
        elif r.op == "!exists":
            parts.append(f"!{r.key}")
        else:
            parts.append(f"{r.key} {r.op} ({','.join(sorted(r.values))})")
    return ",".join(parts)


# Field selectors the real server supports per storage (others get 400).
_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "pods": (
        *_COMMON_FIELDS,
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "events": (
        *_COMMON_FIELDS,
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "replicasets": (*_COMMON_FIELDS, "status.replicas"),
}


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    op: str  # = or !=
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        actual = field_value(obj, self.path)
        return (actual == self.value) == (self.op == "=")


def field_value(obj: Mapping[str, Any], path: str) -> str:
    if path == "source":
        return str((obj.get("source") or {}).get("component", ""))
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None, storage: str) -> list[FieldRequirement]:
    if not text or not text.strip():
        return []
    allowed = FIELD_LABELS.get(storage, _COMMON_FIELDS)
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([^=!]+?)\s*(==|=|!=)\s*(.*)", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        path, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if path not in allowed:
            if storage in FIELD_LABELS:  # the kind's own conversion func words it so
                raise bad_request(f"field label not supported: {path}")
            # runtime.DefaultMetaV1FieldSelectorConversion, for kinds without their own
            raise bad_request(f'"{path}" is not a known field selector: only "metadata.name", "metadata.namespace"')
        out.append(FieldRequirement(path, "!=" if op == "!=" else "=", value))
    return out


class Matcher:
    """One predicate for both selectors (call it); `labels` are the parsed label
    requirements, for candidates from the store's label index."""

    def __init__(self, label_selector: str | None, field_selector: str | None, storage: str) -> None:
        self.labels = parse_label_selector(label_selector)
        self.fields = parse_field_selector(field_selector, storage)

    def __call__(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return matches_labels(self.labels, meta.get("labels")) and all(f.matches(obj) for f in self.fields)


def matcher(label_selector: str | None, field_selector: str | None, storage: str) -> Matcher:
    """One predicate for both selectors; raises 400 on a malformed selector."""
    return Matcher(label_selector, field_selector, storage)
