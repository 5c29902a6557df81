"""Core v1 Events as cluster components (deployment controller, kubelet) record them,
aggregated the way client-go's recorder does: a repeat bumps count and lastTimestamp."""

from __future__ import annotations

import time
from typing import Any

from . import clock
from .registry import Registry
from .store import renew

Obj = dict[str, Any]


class Recorder:
    def __init__(self, registry: Registry, component: str, host: str = "") -> None:
        self.registry = registry
        self.component = component
        self.host = host
        self._seen: dict[tuple[str, str, str, str], tuple[str, str]] = {}

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        if self.registry.store.get("namespaces", "", ns) is None:
            return
        key = (meta.get("uid", ""), type_, reason, message)
        now = clock.rfc3339()
        previous = self._seen.get(key)
        if previous is not None:
            old = self.registry.store.get("events", previous[0], previous[1])
            if old is not None:
                new = renew(old)
                new["count"] = int(old.get("count", 1)) + 1
                new["lastTimestamp"] = now
                self.registry.system_write("events", old, new, manager=self.component)
                return
        name = f"{meta['name']}.{time.time_ns():x}"
        source: Obj = {"component": self.component}
        if self.host:
            source["host"] = self.host
        ev: Obj = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "kind": obj.get("kind", ""),
                "namespace": meta.get("namespace", ""),
                "name": meta["name"],
                "uid": meta.get("uid", ""),
                "apiVersion": obj.get("apiVersion", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        self.registry.system_write("events", None, ev, manager=self.component)
        self._seen[key] = (ns, name)
