"""Build an ApiClient the way kubectl finds its cluster.

KUBECONFIG (a list of files, merged) or ~/.kube/config when present; otherwise the
pod's service account (in-cluster). An explicit path or context wins over both.
A kubeconfig that cannot work is refused with the file and the problem named
(KubeconfigError), never with the loader's internal exception.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from aiohttp import hdrs
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client import ApiClient, Configuration
from yarl import URL

POOL_SIZE = 500  # watches hold connections; 200 rollbacks must not queue behind them
NO_CLUSTER = "no cluster found: set KUBECONFIG or run inside a pod"


class KubeconfigError(Exception):
    """The cluster cannot be found from the kubeconfig or the pod: a configuration error."""


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
        files = check_kubeconfig(source, context, explicit=bool(kubeconfig))
        try:
            await kconfig.load_kube_config(
                config_file=os.pathsep.join(files), context=context, client_configuration=cfg,
                persist_config=False,
            )
        except Exception as e:  # what check_kubeconfig did not foresee, still named
            raise KubeconfigError(f"kubeconfig {source}: {e}") from e
    elif not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise KubeconfigError(NO_CLUSTER)
    else:
        try:
            kconfig.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except Exception as e:
            raise KubeconfigError(f"in-cluster config: {e}") from e
    cfg.connection_pool_maxsize = pool_size
    api = ApiClient(configuration=cfg)
    _proxy_from_env_once(api, cfg)
    return api


def check_kubeconfig(source: str, context: str | None, *, explicit: bool) -> list[str]:
    """The files of ``source`` that exist, once checked as kubectl would use them.

    Like kubectl, files of a $KUBECONFIG list that do not exist are skipped and the
    first file to set a name wins; an explicit --kubeconfig must exist. Raises
    KubeconfigError naming the file and what is wrong with it.
    """
    paths = [p for p in source.split(os.pathsep) if p] if not explicit else [source]
    files = [p for p in paths if os.path.exists(p)]
    if not files:
        where = "" if explicit else " (from $KUBECONFIG)"
        raise KubeconfigError(f"kubeconfig {source}{where}: no such file")
    merged: dict[str, dict[str, Any]] = {"clusters": {}, "users": {}, "contexts": {}}
    current = ""
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except OSError as e:
            raise KubeconfigError(f"kubeconfig {path}: {e.strerror or e}") from e
        except yaml.YAMLError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise KubeconfigError(f"kubeconfig {path}: not valid YAML: {first}") from e
        if doc is None:
            continue  # an empty file adds nothing, as for kubectl
        if not isinstance(doc, dict):
            raise KubeconfigError(f"kubeconfig {path}: not a kubeconfig (a YAML mapping expected)")
        for key in merged:
            for entry in doc.get(key) or []:
                if isinstance(entry, dict) and entry.get("name"):
                    merged[key].setdefault(str(entry["name"]), entry.get(key[:-1]) or {})
        current = current or str(doc.get("current-context") or "")
    name = source if len(files) > 1 else files[0]
    wanted = context or current
    if not wanted and not any(merged.values()):
        raise KubeconfigError(f"kubeconfig {name}: empty, no cluster defined")
    if not wanted:
        raise KubeconfigError(f"kubeconfig {name}: no current-context set; pass --context")
    ctx = merged["contexts"].get(wanted)
    if ctx is None:
        raise KubeconfigError(f"kubeconfig {name}: context {wanted!r} not found")
    for kind in ("cluster", "user"):
        ref = ctx.get(kind) if isinstance(ctx, dict) else None
        if kind == "cluster" and not ref:
            raise KubeconfigError(f"kubeconfig {name}: context {wanted!r} names no cluster")
        if ref and str(ref) not in merged[f"{kind}s"]:
            raise KubeconfigError(
                f"kubeconfig {name}: context {wanted!r} names {kind} {ref!r}, which is not defined")
    cluster = merged["clusters"][str(ctx["cluster"])]
    if not isinstance(cluster, dict) or not cluster.get("server"):
        raise KubeconfigError(f"kubeconfig {name}: cluster {ctx['cluster']!r} has no server")
    return files


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
