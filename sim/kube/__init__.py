"""A Kubernetes API simulator that kubectl and kubernetes-asyncio accept as a cluster.

sim = KubeSim(ready_delay=0.02, termination_grace=0.02)
sim.load_manifests(KubeSim.default_manifests())
url = await sim.start()
sim.write_kubeconfig(tmp_path / "kubeconfig")
"""

from .auth import AccessRule
from .errors import ApiError
from .faults import Faults
from .server import RecordedRequest
from .sim import KubeSim, RequestLog

__all__ = ["AccessRule", "ApiError", "Faults", "KubeSim", "RecordedRequest", "RequestLog"]
