"""Build an ApiClient the way kubectl finds its cluster.

KUBECONFIG (a list of files, merged) or ~/.kube/config when present; otherwise the
pod's service account (in-cluster). An explicit path or context wins over both.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client import ApiClient, Configuration

POOL_SIZE = 500  # watches hold connections; 200 rollbacks must not queue behind them


def kubeconfig_source(kubeconfig: str | os.PathLike[str] | None = None) -> str | None:
    """The kubeconfig path(s) kubectl would use, or None for in-cluster."""
    if kubeconfig:
        return os.fspath(kubeconfig)
    env = os.environ.get("KUBECONFIG")
    if env:
        return env
    default = Path.home() / ".kube" / "config"
    return str(default) if default.exists() else None


async def new_api_client(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    pool_size: int = POOL_SIZE,
) -> ApiClient:
    """An ApiClient for the cluster kubectl would talk to; the caller closes it."""
    cfg = Configuration()
    source = kubeconfig_source(kubeconfig)
    if source is not None:
        await kconfig.load_kube_config(
            config_file=source, context=context, client_configuration=cfg,
            persist_config=False,
        )
    else:
        kconfig.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    cfg.connection_pool_maxsize = pool_size
    return ApiClient(configuration=cfg)
