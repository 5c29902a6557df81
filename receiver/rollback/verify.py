"""Verification by watch: wake on every change of the stable Deployment or its pods.

Watches are shared per namespace (one Deployment watch, one Pod watch), so 200
rollbacks at once cost two streams, not four hundred; each waiter keeps its own index
of the pods its selector matches and is woken only by events that concern it (a
router per mirror hands each event only to those waiters: pods by label, Deployments
by name).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from receiver.domain.kube_views import DeploymentView, PodView, deployment_view, pod_view
from receiver.domain.rollout import Verification, stable_verified
from receiver.domain.selectors import LabelSelector, selects
from receiver.kube import Kube, Mirror, Obj


def _labels(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


class NamespaceWatches:
    """Reference-counted shared Deployment and Pod mirrors per namespace."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._mirrors: dict[str, tuple[Mirror, Mirror]] = {}
        self._users: dict[str, int] = {}

    async def acquire(self, namespace: str) -> tuple[Mirror, Mirror]:
        if namespace not in self._mirrors:
            deploys = Mirror(self.kube, "deployments", namespace)
            pods = Mirror(self.kube, "pods", namespace)
            deploys.start()
            pods.start()
            self._mirrors[namespace] = (deploys, pods)
        self._users[namespace] = self._users.get(namespace, 0) + 1
        deploys, pods = self._mirrors[namespace]
        try:
            await deploys.ready()
            await pods.ready()
        except BaseException:
            await self.release(namespace)
            raise
        return deploys, pods

    async def release(self, namespace: str) -> None:
        self._users[namespace] -= 1
        if self._users[namespace] <= 0:
            del self._users[namespace]
            deploys, pods = self._mirrors.pop(namespace)
            await deploys.stop()
            await pods.stop()

    async def close(self) -> None:
        for ns in list(self._mirrors):
            self._users[ns] = 0
            await self.release(ns)


class _PodRouter:
    """Routes one pods Mirror's events to the Watchers they concern.

    With 200 rollbacks in a namespace, handing every pod event to every Watcher (each
    testing its selector) cost more CPU than the rest of a rollback. Watchers are filed
    under one of their selector's matchLabels pairs, pods under all their label pairs,
    so an event reaches the few Watchers filed under one of the pod's old or new pairs.
    A selector with only matchExpressions is filed under None and sees every event.
    """

    def __init__(self, mirror: Mirror) -> None:
        # weak: _routers maps the mirror to this router, which must not keep it alive
        self._mirror = weakref.ref(mirror)
        self.watchers: dict[tuple[str, str] | None, list[Watcher]] = {}
        self.pods_by_label: dict[tuple[str, str], set[str]] = {}
        self.labels: dict[str, dict[str, str]] = {}  # pod name -> labels as last seen
        self._rebuild()
        mirror.subscribe(self._on_event)

    def _rebuild(self) -> None:
        self.pods_by_label.clear()
        self.labels.clear()
        for name, pod in self._items().items():
            self._index(name, _labels(pod))

    def _items(self) -> dict[str, Obj]:
        mirror = self._mirror()
        return mirror.items if mirror is not None else {}

    def _index(self, name: str, labels: dict[str, str]) -> None:
        self.labels[name] = labels
        for pair in labels.items():
            self.pods_by_label.setdefault(pair, set()).add(name)

    def _unindex(self, name: str) -> dict[str, str]:
        old = self.labels.pop(name, None) or {}
        for pair in old.items():
            names = self.pods_by_label.get(pair)
            if names is not None:
                names.discard(name)
                if not names:
                    del self.pods_by_label[pair]
        return old

    @staticmethod
    def key(selector: LabelSelector | None) -> tuple[str, str] | None:
        match = selector.match_labels if selector is not None else ()
        return min(match) if match else None

    def candidates(self, selector: LabelSelector | None) -> list[str]:
        """The names of the pods that may match ``selector`` (a superset; the caller tests each)."""
        if selector is None:
            return []
        key = self.key(selector)
        items = self._items()
        if key is None:
            return list(items)
        return [n for n in self.pods_by_label.get(key, ()) if n in items]

    def add(self, watcher: Watcher, key: tuple[str, str] | None) -> None:
        self.watchers.setdefault(key, []).append(watcher)

    def remove(self, watcher: Watcher, key: tuple[str, str] | None) -> None:
        group = self.watchers.get(key)
        if group is not None and watcher in group:
            group.remove(watcher)
            if not group:
                del self.watchers[key]

    def _on_event(self, kind: str, obj: Obj | None) -> None:
        if kind in ("SYNC", "ERROR") or obj is None:
            self._rebuild()
            for group in list(self.watchers.values()):
                for w in list(group):
                    w._on_pod(kind, obj)
            return
        name = obj["metadata"]["name"]
        old = self._unindex(name)
        new = _labels(obj)
        if kind != "DELETED":
            self._index(name, new)
        targets: list[Watcher] = list(self.watchers.get(None, ()))
        for pair in {*old.items(), *new.items()}:
            targets.extend(self.watchers.get(pair, ()))
        for w in dict.fromkeys(targets):  # once each, in a stable order
            w._on_pod(kind, obj)


class _DeployRouter:
    """Routes a deployments Mirror's events by name: 200 Watchers, one Deployment each."""

    def __init__(self, mirror: Mirror) -> None:
        self.watchers: dict[str, list[Watcher]] = {}
        mirror.subscribe(self._on_event)

    def add(self, watcher: Watcher) -> Callable[[], None]:
        group = self.watchers.setdefault(watcher.name, [])
        group.append(watcher)

        def remove() -> None:
            if watcher in group:
                group.remove(watcher)
            if not group and self.watchers.get(watcher.name) is group:
                del self.watchers[watcher.name]
        return remove

    def _on_event(self, kind: str, obj: Obj | None) -> None:
        if kind in ("SYNC", "ERROR") or obj is None:
            targets = [w for group in self.watchers.values() for w in group]
        else:
            targets = list(self.watchers.get(obj["metadata"]["name"], ()))
        for w in targets:
            w._on_deploy(kind, obj)


_routers: weakref.WeakKeyDictionary[Mirror, _PodRouter] = weakref.WeakKeyDictionary()
_deploy_routers: weakref.WeakKeyDictionary[Mirror, _DeployRouter] = weakref.WeakKeyDictionary()


def _router(pods: Mirror) -> _PodRouter:
    router = _routers.get(pods)
    if router is None:
        router = _routers[pods] = _PodRouter(pods)
    return router


def _deploy_router(deploys: Mirror) -> _DeployRouter:
    router = _deploy_routers.get(deploys)
    if router is None:
        router = _deploy_routers[deploys] = _DeployRouter(deploys)
    return router


class Watcher:
    """Follows one Deployment and its pods in shared mirrors; ``changed`` is set on news.

    It reads typed views the mirrors build once per object version, so 200 Watchers
    of one namespace share each pod's PodView."""

    def __init__(self, deploys: Mirror, pods: Mirror, name: str) -> None:
        self.deploys = deploys
        self.pods_mirror = pods
        self.name = name
        self.changed = asyncio.Event()
        self.pods: dict[str, PodView] = {}
        self._selector: LabelSelector | None = None
        self._router = _router(pods)
        self._key: tuple[str, str] | None = None
        self._router.add(self, self._key)
        self._unsub = [_deploy_router(deploys).add(self)]
        self._reindex()

    @property
    def deployment(self) -> DeploymentView | None:
        return self.deploys.view(self.name, deployment_view)

    def _selector_now(self) -> LabelSelector | None:
        d = self.deployment
        return d.selector if d is not None else None

    def _pod(self, name: str) -> PodView | None:
        return self.pods_mirror.view(name, pod_view)

    def _reindex(self) -> None:
        self._selector = self._selector_now()
        key = _PodRouter.key(self._selector)
        if key != self._key:
            self._router.remove(self, self._key)
            self._router.add(self, key)
            self._key = key
        self.pods = {}
        for n in self._router.candidates(self._selector):
            p = self._pod(n)
            if p is not None and selects(self._selector, p.labels):
                self.pods[n] = p
        self.changed.set()

    def _on_deploy(self, kind: str, obj: Obj | None) -> None:
        if kind in ("SYNC", "ERROR"):
            self._reindex()
        elif obj is not None and obj["metadata"]["name"] == self.name:
            if self._selector_now() != self._selector:
                self._reindex()
            self.changed.set()

    def _on_pod(self, kind: str, obj: Obj | None) -> None:
        if kind in ("SYNC", "ERROR") or obj is None:
            self._reindex()
            return
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            if self.pods.pop(name, None) is not None:
                self.changed.set()
            return
        p = self._pod(name)
        if p is not None and selects(self._selector, p.labels):
            self.pods[name] = p
            self.changed.set()
        elif self.pods.pop(name, None) is not None:
            self.changed.set()

    def close(self) -> None:
        self._router.remove(self, self._key)
        for unsub in self._unsub:
            unsub()

    async def wait(self, deadline: float) -> bool:
        """Wait for news until ``deadline`` (monotonic); False on timeout."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                await self.changed.wait()
        got = self.changed.is_set()
        self.changed.clear()
        return got


@dataclass(frozen=True, slots=True)
class Outcome:
    verification: Verification | None
    timed_out: bool
    missing: bool = False


async def wait_verified(
    watcher: Watcher, desired: int, deadline: float,
    on_progress: Callable[[Verification], None],
) -> Outcome:
    """Until rolled out with every pod Ready, ProgressDeadlineExceeded, or the deadline."""
    last: Verification | None = None
    while True:
        d = watcher.deployment
        if d is None:
            return Outcome(last, timed_out=False, missing=True)
        if d.spec_replicas == desired:
            v = stable_verified(d, watcher.pods.values())
            if v != last:
                on_progress(v)
            last = v
            if v.done or v.failed:
                return Outcome(v, timed_out=False)
        if not await watcher.wait(deadline):
            return Outcome(last, timed_out=True)


async def wait_pods_gone(watcher: Watcher, deadline: float,
                         on_progress: Callable[[int], None]) -> bool:
    """Until no pod of the Deployment is left (terminating ones included)."""
    last = -1
    while True:
        n = len(watcher.pods)
        if n != last:
            on_progress(n)
            last = n
        if n == 0:
            return True
        if not await watcher.wait(deadline):
            return False
