"""Kubernetes protobuf request bodies, for the kinds kubectl's typed clients send that way.

client-go's typed clients (``kubectl create configmap``) send
``application/vnd.kubernetes.protobuf``: the magic ``k8s\\0``, then runtime.Unknown
{1: TypeMeta {1: apiVersion, 2: kind}, 2: raw message}. The raw message is decoded to
the JSON form the rest of the simulator stores (field numbers from k8s.io/api
generated.proto); answers stay JSON, which the client also accepts.
"""

from __future__ import annotations

import base64
from typing import Any

PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# ObjectMeta string fields by number; 11 labels and 12 annotations are maps
_META_STRINGS = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Every field of one message in order (repeated and map fields appear many times)."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            out.append((number, value))
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > len(buf):
                raise ValueError("truncated field")
            out.append((number, buf[i : i + size]))
            i += size
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value


def _entry(value: int | bytes) -> tuple[str, bytes]:
    """A map entry: {1: key, 2: value}."""
    key, val = "", b""
    for n, v in fields(_bytes(value)):
        if n == 1:
            key = _bytes(v).decode()
        elif n == 2:
            val = _bytes(v)
    return key, val


def object_meta(buf: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for n, v in fields(buf):
        if n in _META_STRINGS:
            meta[_META_STRINGS[n]] = _bytes(v).decode()
        elif n in (11, 12):
            key, val = _entry(v)
            meta.setdefault("labels" if n == 11 else "annotations", {})[key] = val.decode()
    return meta


def config_map(buf: bytes) -> dict[str, Any]:
    """ConfigMap {1: metadata, 2: data map, 3: binaryData map, 4: immutable}."""
    obj: dict[str, Any] = {"metadata": {}}
    for n, v in fields(buf):
        if n == 1:
            obj["metadata"] = object_meta(_bytes(v))
        elif n in (2, 3):
            key, val = _entry(v)
            if n == 2:
                obj.setdefault("data", {})[key] = val.decode()
            else:
                obj.setdefault("binaryData", {})[key] = base64.b64encode(val).decode()
        elif n == 4:
            obj["immutable"] = bool(v)
    return obj


# k8s.io/api/authorization/v1/generated.proto field numbers
_RESOURCE_ATTRS = ("namespace", "verb", "group", "version", "resource", "subresource", "name")
_NON_RESOURCE_ATTRS = ("path", "verb")


def _strings(buf: bytes, names: tuple[str, ...]) -> dict[str, str]:
    """A message of string fields numbered 1.. in the order of ``names`` (empty ones left out)."""
    found = {n: _bytes(v).decode() for n, v in fields(buf) if isinstance(v, bytes)}
    return {name: found[n] for n, name in enumerate(names, 1) if found.get(n)}


def self_subject_access_review(buf: bytes) -> dict[str, Any]:
    """SelfSubjectAccessReview {1: metadata, 2: spec {1: resourceAttributes, 2:
    nonResourceAttributes}}, as `kubectl auth can-i` sends it; only the attributes matter."""
    spec: dict[str, Any] = {}
    for n, v in fields(buf):
        if n != 2:
            continue
        for k, attrs in fields(_bytes(v)):
            if k == 1:
                spec["resourceAttributes"] = _strings(_bytes(attrs), _RESOURCE_ATTRS)
            elif k == 2:
                spec["nonResourceAttributes"] = _strings(_bytes(attrs), _NON_RESOURCE_ATTRS)
    return {"metadata": {}, "spec": spec}


DECODERS = {
    ("v1", "ConfigMap"): config_map,
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): self_subject_access_review,
}


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf body; ValueError for anything it cannot read."""
    if not body.startswith(MAGIC):
        raise ValueError("no k8s protobuf magic")
    type_meta: dict[str, str] = {}
    raw = b""
    for n, v in fields(body[len(MAGIC) :]):
        if n == 1:
            type_meta = {("apiVersion", "kind")[k - 1]: _bytes(x).decode() for k, x in fields(_bytes(v)) if k in (1, 2)}
        elif n == 2:
            raw = _bytes(v)
    decoder = DECODERS.get((type_meta.get("apiVersion", ""), type_meta.get("kind", "")))
    if decoder is None:
        raise ValueError(f"protobuf bodies of {type_meta.get('kind') or 'this kind'} are not supported")
    return {**type_meta, **decoder(raw)}
