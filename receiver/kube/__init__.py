"""The kubernetes-asyncio gateway: client construction, typed calls, watches, retries.

The names below load on first use (PEP 562), so importing a light module of this package
(retry's duration parsing, errors) does not load the Kubernetes client: a CLI command
that never talks to the cluster starts without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from receiver.kube.client import kubeconfig_source, new_api_client
    from receiver.kube.errors import KubeError, WatchExpired
    from receiver.kube.gateway import FIELD_MANAGER, Kube, Obj, micro_time, parse_time
    from receiver.kube.mirror import Mirror
    from receiver.kube.retry import RetryPolicy

_WHERE = {
    "FIELD_MANAGER": "gateway", "Kube": "gateway", "Obj": "gateway", "micro_time": "gateway",
    "parse_time": "gateway", "KubeError": "errors", "WatchExpired": "errors", "Mirror": "mirror",
    "RetryPolicy": "retry", "kubeconfig_source": "client", "new_api_client": "client",
}

__all__ = [
    "FIELD_MANAGER",
    "Kube",
    "KubeError",
    "Mirror",
    "Obj",
    "RetryPolicy",
    "WatchExpired",
    "kubeconfig_source",
    "micro_time",
    "new_api_client",
    "parse_time",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
