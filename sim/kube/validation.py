"""Validation the real API server applies to the kinds we serve (the parts clients hit)."""

from __future__ import annotations

import re
from typing import Any

from . import selectors
from .errors import Cause, RawValue, bad_request, invalid_value, required

_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


QUALIFIED_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
    "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


def is_dns_subdomain(name: str) -> list[str]:
    errs = []
    if len(name) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.fullmatch(name):
        errs.append(SUBDOMAIN_MSG)
    return errs


def is_qualified_name(value: str) -> list[str]:
    """validation.IsQualifiedName: optional DNS prefix/, then a 63-char name. As in Go,
    the name's pattern is checked even when it is empty or too long (two messages)."""
    parts = value.split("/")
    errs: list[str] = []
    if len(parts) > 2:
        return [
            "a qualified name " + QUALIFIED_MSG + " with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        if not parts[0]:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + m for m in is_dns_subdomain(parts[0])]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QUALIFIED.fullmatch(name):
        errs.append("name part " + QUALIFIED_MSG)
    return errs


def validate_name(kind: str, name: str) -> list[Cause]:
    if not name:
        return [required("metadata.name")]
    if kind == "Namespace":
        bad = [] if _DNS1123_LABEL.fullmatch(name) and len(name) <= 63 else [LABEL_MSG]
    else:
        bad = is_dns_subdomain(name)
    return [invalid_value("metadata.name", name, m) for m in bad]


def _non_negative(path: str, value: Any) -> list[Cause]:
    if value is not None and (not isinstance(value, int) or value < 0):
        return [invalid_value(path, value, "must be greater than or equal to 0")]
    return []


def validate_deployment(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = _non_negative("spec.replicas", spec.get("replicas"))
    sel = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        causes.append(required("spec.selector"))
        if not sel:
            return causes
    reqs = selectors.selector_from_label_selector(sel)
    if reqs and not selectors.matches_labels(reqs, labels):
        causes.append(
            invalid_value(
                "spec.template.metadata.labels",
                _go_map(labels),
                "`selector` does not match template `labels`",
            )
        )
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        causes.append(required("spec.template.spec.containers"))
    for i, c in enumerate(containers):
        if not c.get("name"):
            causes.append(required(f"spec.template.spec.containers[{i}].name"))
        if not c.get("image"):
            causes.append(required(f"spec.template.spec.containers[{i}].image"))
    pds = spec.get("progressDeadlineSeconds")
    mrs = spec.get("minReadySeconds") or 0
    if pds is not None and pds <= mrs:
        causes.append(
            invalid_value(
                "spec.progressDeadlineSeconds",
                pds,
                "must be greater than minReadySeconds",
            )
        )
    return causes


def _go_map(labels: dict[str, str]) -> RawValue:
    """A label map as Go's %#v renders it in the real message."""
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
    return RawValue(f"map[string]string{{{inner}}}")


def validate_scale(obj: dict[str, Any]) -> list[Cause]:
    return _non_negative("spec.replicas", (obj.get("spec") or {}).get("replicas"))


def validate_lease(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    d = spec.get("leaseDurationSeconds")
    if d is not None and (not isinstance(d, int) or d <= 0):
        causes.append(invalid_value("spec.leaseDurationSeconds", d, "must be greater than 0"))
    causes += _non_negative("spec.leaseTransitions", spec.get("leaseTransitions"))
    return causes


_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
    "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
MAX_CONFIG_MAP_BYTES = 1024 * 1024  # core.MaxSecretSize, also the ConfigMap's limit


def is_config_map_key(key: str) -> list[str]:
    """validation.IsConfigMapKey: length, pattern, then no '.', '..' or '..' prefix."""
    errs: list[str] = []
    if len(key) > 253:
        errs.append("must be no more than 253 characters")
    if not _CONFIG_KEY.fullmatch(key):
        errs.append(CONFIG_KEY_MSG)
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _value_size(value: Any, binary: bool) -> int:
    if not isinstance(value, str):
        return 0
    if binary:  # binaryData travels base64-encoded; the limit counts the decoded bytes
        return len(value.rstrip("=")) * 3 // 4
    return len(value.encode())


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    return "array" if isinstance(value, list) else "null"


def validate_config_map(obj: dict[str, Any]) -> list[Cause]:
    """ValidateConfigMap: keys of data and binaryData are config keys, not in both, and
    the values together are at most 1 MiB."""
    causes: list[Cause] = []
    data = obj.get("data") or {}
    binary = obj.get("binaryData") or {}
    total = 0
    for bag, other, name, is_binary in ((data, binary, "data", False), (binary, data, "binaryData", True)):
        if not isinstance(bag, dict):
            continue
        for key, value in bag.items():
            if not isinstance(value, str):  # decoding into map[string]string fails first
                raise bad_request(
                    'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal '
                    f"{_json_type(value)} into Go struct field ConfigMap.{name} of type string"
                )
            causes += [invalid_value(f"{name}[{key}]", key, m) for m in is_config_map_key(key)]
            if isinstance(other, dict) and key in other:
                dup = "binaryData" if name == "data" else "data"
                causes.append(invalid_value(f"{name}[{key}]", key, f"duplicate of key present in {dup}"))
            total += _value_size(value, is_binary)
    if total > MAX_CONFIG_MAP_BYTES:
        causes.append(Cause("FieldValueTooLong", f"Too long: may not be more than {MAX_CONFIG_MAP_BYTES} bytes", ""))
    return causes


def validate_config_map_update(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """ValidateConfigMapUpdate: an immutable ConfigMap keeps its data and stays immutable."""
    if not old.get("immutable"):
        return []
    causes = []
    msg = "Forbidden: field is immutable when `immutable` is set"
    if new.get("immutable") != old.get("immutable"):
        causes.append(Cause("FieldValueForbidden", msg, "immutable"))
    for key in ("data", "binaryData"):
        if (new.get(key) or {}) != (old.get(key) or {}):
            causes.append(Cause("FieldValueForbidden", msg, key))
    return causes


NAMESPACE_KINDS = {"Pod", "Deployment", "ReplicaSet", "Lease", "Event", "Service", "ConfigMap"}


def validate_event(core: dict[str, Any], namespace: str, via_events_v1: bool) -> list[Cause]:
    """ValidateEventCreate (pkg/apis/core/validation/events.go), on the core form."""
    causes: list[Cause] = []
    # The path names the internal field (ReportingController), so core v1 errors say
    # reportingController too, though its JSON field is reportingComponent.
    ctrl_field = "reportingController"
    involved = core.get("involvedObject") or {}
    inv_ns = involved.get("namespace", "")
    if not core.get("eventTime"):
        if not inv_ns:
            if namespace not in ("", "default"):
                causes.append(invalid_value("involvedObject.namespace", inv_ns, "does not match event.namespace"))
        elif namespace != inv_ns:
            causes.append(invalid_value("involvedObject.namespace", inv_ns, "does not match event.namespace"))
    else:
        if not inv_ns and namespace not in ("default", "kube-system"):
            causes.append(invalid_value("involvedObject.namespace", inv_ns, "does not match event.namespace"))
        ctrl = core.get("reportingComponent", "")
        if not ctrl:
            causes.append(required(ctrl_field))
        causes += [invalid_value(ctrl_field, ctrl, m) for m in is_qualified_name(ctrl)]
        inst = core.get("reportingInstance", "")
        if not inst:
            causes.append(required("reportingInstance"))
        if len(inst) > 128:
            causes.append(invalid_value("reportingInstance", "", "can have at most 128 characters"))
        for fname, limit in (("action", 128), ("reason", 128)):
            v = core.get(fname, "")
            if not v:
                causes.append(required(fname))
            if len(v) > limit:
                causes.append(invalid_value(fname, "", f"can have at most {limit} characters"))
        if len(core.get("message", "")) > 1024:
            causes.append(invalid_value("message", "", "can have at most 1024 characters"))
    if namespace:
        causes += [invalid_value("namespace", namespace, m) for m in is_dns_subdomain(namespace)]
    if not via_events_v1:
        return causes
    # Strict validation for events.k8s.io/v1 creates.
    if not core.get("eventTime"):
        causes.append(required("eventTime"))
    t = core.get("type", "")
    if t not in ("Normal", "Warning"):
        causes.append(invalid_value("type", "", f"has invalid value: {t}"))
    if core.get("firstTimestamp"):
        causes.append(invalid_value("firstTimestamp", "", "needs to be unset"))
    if core.get("lastTimestamp"):
        causes.append(invalid_value("lastTimestamp", "", "needs to be unset"))
    if core.get("count"):
        causes.append(invalid_value("count", "", "needs to be unset"))
    src = core.get("source") or {}
    if src.get("component") or src.get("host"):
        causes.append(invalid_value("source", "", "needs to be unset"))
    return causes
