"""The kubernetes-asyncio gateway: client construction, typed calls, watches, retries."""

from receiver.kube.client import kubeconfig_source, new_api_client
from receiver.kube.errors import KubeError, WatchExpired
from receiver.kube.gateway import FIELD_MANAGER, Kube, Obj, micro_time, parse_time
from receiver.kube.mirror import Mirror
from receiver.kube.retry import RetryPolicy

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
