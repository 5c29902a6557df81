"""KubeSim: the simulated cluster (store + controllers + HTTP server) in one object."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import resources
from .auth import AccessRule
from .controller import DeploymentController
from .errors import ApiError, bad_request
from .faults import Faults
from .kubelet import BEHAVIOR_ANNOTATION, BEHAVIORS, DELAY_ANNOTATION, Kubelet
from .registry import Registry
from .server import Handlers, RecordedRequest
from .store import Obj, Store, clone
from .watch import WatchHub

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
SEED_MANAGER = "kubectl-client-side-apply"


class RequestLog(list[RecordedRequest]):
    """Every request the simulator received, in order."""

    def matching(
        self,
        method: str | None = None,
        resource: str | None = None,
        verb: str | None = None,
        name: str | None = None,
    ) -> list[RecordedRequest]:
        return [
            r
            for r in self
            if (method is None or r.method == method)
            and (resource is None or r.resource == resource)
            and (verb is None or r.verb == verb)
            and (name is None or r.name == name)
        ]


class KubeSim:
    """A Kubernetes API server + deployment controller + kubelet, on loopback.

    ready_delay: seconds from pod creation to Ready (per Deployment override with the
    annotation sim.rollback-receiver.io/ready-delay-seconds); termination_grace: seconds
    a deleted pod stays Terminating; tokens: None for anonymous access, else
    token -> rules (401 for unknown tokens, 403 when no rule allows a request).
    """

    def __init__(
        self,
        ready_delay: float = 0.5,
        termination_grace: float = 0.5,
        tokens: Mapping[str, Iterable[AccessRule]] | None = None,
        *,
        history_window: int = 5000,
        bookmark_interval: float = 60.0,
    ) -> None:
        self.ready_delay = ready_delay
        self.termination_grace = termination_grace
        self.tokens: dict[str, list[AccessRule]] | None = (
            None if tokens is None else {k: list(v) for k, v in tokens.items()}
        )
        self.bookmark_interval = bookmark_interval
        self.store = Store(window=history_window)
        self.registry = Registry(self.store)
        self.faults = Faults()
        self.requests: RequestLog = RequestLog()
        self.watches = WatchHub(self.store)
        self._behaviors: dict[tuple[str, str], str] = {}
        self._runner: web.AppRunner | None = None
        self._controller: DeploymentController | None = None
        self._kubelet: Kubelet | None = None
        self.url = ""

    # lifecycle ---------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> str:
        """Serve; with ``ssl_context`` over https (kubectl sends a token only over TLS)."""
        self._controller = DeploymentController(self.registry)
        self._kubelet = Kubelet(
            self.registry,
            ready_delay=lambda: self.ready_delay,
            termination_grace=lambda: self.termination_grace,
            behavior_for=self._behavior_for,
        )
        self._kubelet.start()
        self._controller.start()
        self._runner = web.AppRunner(Handlers(self).app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None and hasattr(server, "sockets")
        bound = server.sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"{'https' if ssl_context else 'http'}://{shown}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        self.watches.close_all()
        if self._controller is not None:
            await self._controller.stop()
            self._controller = None
        if self._kubelet is not None:
            self._kubelet.stop()
            self._kubelet = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> KubeSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # seeding -------------------------------------------------------------------
    @staticmethod
    def default_manifests() -> Path:
        return MANIFESTS / "finance-service"

    def load_manifests(self, path: str | os.PathLike[str]) -> list[Obj]:
        """Apply every YAML document in a file, or in every *.yaml/*.yml under a folder."""
        p = Path(path)
        files = sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml")) if p.is_dir() else [p]
        docs: list[Obj] = []
        for f in files:
            docs += [d for d in yaml.safe_load_all(f.read_text()) if isinstance(d, dict)]
        # Namespaces first, as kubectl apply -f orders them.
        docs.sort(key=lambda d: 0 if d.get("kind") == "Namespace" else 1)
        served = [d for d in docs if resources.by_kind(str(d.get("apiVersion", "")), str(d.get("kind", "")))]
        return [self.apply(d) for d in served]  # kinds not simulated (Service...) are skipped

    def apply(self, obj: Mapping[str, Any], field_manager: str = SEED_MANAGER) -> Obj:
        """Create or replace an object as `kubectl apply` would (namespace created if missing)."""
        if obj.get("kind") == "List":
            for item in obj.get("items") or []:
                self.apply(item, field_manager)
            return dict(obj)
        res = resources.by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        if res is None:
            raise bad_request(f'no matches for kind "{obj.get("kind")}" in version "{obj.get("apiVersion")}"')
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or ("default" if res.namespaced else "")
        if res.namespaced:
            self.registry.ensure_namespace(ns)
        existing = self.store.get(res.store, ns, meta.get("name", ""))
        body = clone(dict(obj))
        if existing is None:
            return clone(self.registry.create(res, ns, body, manager=field_manager))
        return clone(self.registry.update(res, ns, meta["name"], body, manager=field_manager))

    def seed_week(self, n: int) -> None:
        """Set the phased-rollout split of week n (1..4) on the seeded Deployments."""
        splits = {1: (4, 1), 2: (2, 3), 3: (1, 4), 4: (0, 5)}
        if n not in splits:
            raise ValueError(f"week must be 1..4, not {n}")
        if self.get("deployments", "finance", "finance-service-v1") is None:
            self.load_manifests(self.default_manifests())
        v1, v2 = splits[n]
        self.scale_as("finance", "finance-service-v1", v1, field_manager=SEED_MANAGER)
        self.scale_as("finance", "finance-service-v2", v2, field_manager=SEED_MANAGER)

    def write_kubeconfig(
        self, path: str | os.PathLike[str], token: str | None = None, namespace: str = "finance"
    ) -> Path:
        user: dict[str, Any] = {"token": token} if token else {}
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sim", "cluster": {"server": self.url, **self._tls_skip()}}],
            "users": [{"name": "sim-user", "user": user}],
            "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "sim-user", "namespace": namespace}}],
            "current-context": "sim",
            "preferences": {},
        }
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        return p

    def _tls_skip(self) -> dict[str, Any]:
        return {"insecure-skip-tls-verify": True} if self.url.startswith("https:") else {}

    # reading -------------------------------------------------------------------
    @staticmethod
    def _res(resource: str) -> resources.Resource:
        for r in resources.RESOURCES:
            if resource in (r.plural, r.singular, f"{r.plural}.{r.group}", *r.short_names):
                return r
        raise KeyError(resource)

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        r = self._res(resource)
        obj = self.store.get(r.store, namespace if r.namespaced else "", name)
        return clone(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None = None, label_selector: str | None = None) -> list[Obj]:
        from . import selectors

        r = self._res(resource)
        reqs = selectors.parse_label_selector(label_selector)
        return [
            clone(o)
            for o in self.store.items(r.store, namespace if r.namespaced else None, selectors.equalities(reqs))
            if selectors.matches_labels(reqs, o["metadata"].get("labels"))
        ]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once predicate() holds, re-checking on every store change, request and
        watch opened or closed (no polling)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            fut = self.store.changed()
            try:
                await asyncio.wait_for(asyncio.shield(fut), remaining)
            except TimeoutError:
                if predicate():
                    return
                raise TimeoutError(f"condition not met within {timeout}s") from None

    async def settled(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until the controller has nothing queued (useful right after a write)."""
        if self._controller is not None:
            await asyncio.wait_for(self._controller.idle.wait(), timeout)

    def compact(self) -> None:
        """Forget change history: watches from any older resourceVersion now get 410."""
        self.store.compact()

    # actors ----------------------------------------------------------------------
    def set_pod_behavior(self, namespace: str, deployment: str, behavior: str) -> None:
        """How pods of this Deployment created from now on behave: ready | crashloop |
        imagepull | never-ready (overrides the Deployment's annotation)."""
        if behavior not in BEHAVIORS:
            raise ValueError(f"behavior must be one of {BEHAVIORS}")
        self._behaviors[(namespace, deployment)] = behavior

    def _behavior_for(self, pod: Obj) -> tuple[str, float]:
        ns = pod["metadata"].get("namespace", "")
        d = self._deployment_of(pod)
        ann = (d or {}).get("metadata", {}).get("annotations") or {}
        behavior = ann.get(BEHAVIOR_ANNOTATION, "ready")
        if d is not None:
            behavior = self._behaviors.get((ns, d["metadata"]["name"]), behavior)
        if behavior not in BEHAVIORS:
            behavior = "ready"
        try:
            delay = float(ann.get(DELAY_ANNOTATION, self.ready_delay))
        except ValueError:
            delay = self.ready_delay
        return behavior, max(delay, 0.0)

    def _deployment_of(self, pod: Obj) -> Obj | None:
        ns = pod["metadata"].get("namespace", "")
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "ReplicaSet":
                rs = self.store.get("replicasets", ns, ref["name"])
                for dref in (rs or {}).get("metadata", {}).get("ownerReferences") or []:
                    if dref.get("kind") == "Deployment":
                        return self.store.get("deployments", ns, dref["name"])
        return None

    def scale_as(self, namespace: str, name: str, replicas: int, field_manager: str = "argocd-controller") -> Obj:
        """Scale as another actor would (a GitOps revert): through the scale subresource,
        recorded in managedFields under field_manager."""
        self.registry.update(
            resources.DEPLOYMENTS,
            namespace,
            name,
            {"spec": {"replicas": replicas}},
            manager=field_manager,
            subresource="scale",
        )
        return self.get("deployments", namespace, name) or {}


__all__ = ["ApiError", "KubeSim", "RequestLog"]
