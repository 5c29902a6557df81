"""Build an ApiClient the way kubectl finds its cluster.

KUBECONFIG (a list of files, merged) or ~/.kube/config when present; otherwise the
pod's service account (in-cluster). An explicit path or context wins over both.
"""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import hdrs
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client import ApiClient, Configuration
from yarl import URL

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
    api = ApiClient(configuration=cfg)
    _proxy_from_env_once(api, cfg)
    return api


def _proxy_from_env_once(api: ApiClient, cfg: Configuration) -> None:
    """Read HTTPS_PROXY / NO_PROXY once, as client-go does, instead of per request.

    kubernetes-asyncio's session has trust_env=True, so aiohttp looks up ~/.netrc and
    the proxy variables in a worker thread on every request: two thread hops each, and
    with 200 rollbacks at once requests queued behind the default executor's few
    threads. client-go (http.ProxyFromEnvironment) reads the variables once per process
    and never reads .netrc; a kubeconfig proxy-url wins over them, as there.
    """
    rest = api.rest_client
    if not cfg.proxy and cfg.host:
        try:
            proxy, auth = get_env_proxy_for_url(URL(cfg.host))
        except LookupError:
            pass
        else:
            rest.proxy = str(proxy)
            if auth is not None:
                rest.proxy_headers = {**(rest.proxy_headers or {}),
                                      hdrs.PROXY_AUTHORIZATION: auth.encode()}
    rest.pool_manager._trust_env = False
