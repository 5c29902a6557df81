"""The deployment and replica-set controllers, and the garbage collector.

Event-driven like kube-controller-manager: store changes enqueue the owning Deployment,
a single task drains the queue, and the only timers are progress-deadline checks
(loop.call_later). Rollout semantics follow pkg/controller/deployment (sync.go,
progress.go, util/deployment_util.go); template changes replace the old ReplicaSet at
once rather than surging (the receiver only ever scales).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from typing import Any

from . import clock, selectors
from .recorder import Recorder
from .registry import Registry
from .store import Change, Obj, clone, renew

MANAGER = "kube-controller-manager"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"


def _template_bytes(template: dict[str, Any]) -> bytes:
    return json.dumps(template, sort_keys=True, separators=(",", ":")).encode()


def template_hash(template: dict[str, Any], data: bytes | None = None) -> str:
    data = _template_bytes(template) if data is None else data
    return clock.safe_encode(str(clock.fnv32a(data)))


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        v = int(value[:-1]) * total / 100
        return math.ceil(v) if round_up else math.floor(v)
    return int(value or 0)


def max_unavailable(d: Obj) -> int:
    spec = d.get("spec") or {}
    replicas = spec.get("replicas", 1)
    strategy = spec.get("strategy") or {}
    if strategy.get("type") != "RollingUpdate" or replicas == 0:
        return 0
    ru = strategy.get("rollingUpdate") or {}
    surge = _int_or_percent(ru.get("maxSurge", "25%"), replicas, True)
    unavail = _int_or_percent(ru.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavail == 0:
        unavail = 1
    return min(unavail, int(replicas))


def _owned_by(obj: Obj, uid: str) -> bool:
    return any(r.get("uid") == uid and r.get("controller") for r in obj["metadata"].get("ownerReferences") or [])


def _controller_ref(obj: Obj) -> dict[str, Any] | None:
    return next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def is_pod_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _condition(type_: str, status: str, reason: str, message: str) -> Obj:
    now = clock.rfc3339()
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def _get_cond(status: Obj, type_: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


def _set_cond(status: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: same status+reason is a no-op; otherwise replace at the end."""
    current = _get_cond(status, cond["type"])
    if current and current["status"] == cond["status"] and current["reason"] == cond["reason"]:
        return
    if current and current["status"] == cond["status"]:
        cond["lastTransitionTime"] = current["lastTransitionTime"]
    status["conditions"] = [c for c in status.get("conditions") or [] if c["type"] != cond["type"]] + [cond]


def _remove_cond(status: Obj, type_: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c["type"] != type_]


def _omit_zero(status: Obj, keys: tuple[str, ...]) -> Obj:
    return {k: v for k, v in status.items() if not (k in keys and not v)}


class DeploymentController:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store
        self.recorder = Recorder(registry, "deployment-controller")
        self.rs_recorder = Recorder(registry, "replicaset-controller")
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # uid -> (generation, template bytes, pod-template-hash): the template only changes
        # with the spec, and a scale bumps the generation without changing it (comparing
        # the bytes is cheap; hashing them byte by byte in Python is not)
        self._hashes: dict[str, tuple[int, bytes, str]] = {}
        # When each Deployment last made progress (monotonic), for precise deadlines.
        self._progress_at: dict[str, float] = {}
        self._unsubscribe = self.store.subscribe(self._on_change)
        self.idle = asyncio.Event()
        self.idle.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sim-deployment-controller")
            for d in list(self.store.items("deployments")):
                self.enqueue(d["metadata"]["namespace"], d["metadata"]["name"])

    async def stop(self) -> None:
        self._unsubscribe()
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def enqueue(self, ns: str, name: str) -> None:
        key = (ns, name)
        if key not in self._queued:
            self._queued.add(key)
            self.idle.clear()
            self._queue.put_nowait(key)

    def _on_change(self, change: Change) -> None:
        meta = change.obj["metadata"]
        ns = meta.get("namespace", "")
        if change.storage == "deployments":
            if change.type == "DELETED":
                self._hashes.pop(meta.get("uid", ""), None)
            self.enqueue(ns, meta["name"])
        elif change.storage == "replicasets":
            ref = _controller_ref(change.obj)
            if ref and ref.get("kind") == "Deployment":
                self.enqueue(ns, ref["name"])
        elif change.storage == "pods":
            ref = _controller_ref(change.obj)
            if ref and ref.get("kind") == "ReplicaSet":
                rs = self.store.get("replicasets", ns, ref["name"])
                dref = _controller_ref(rs) if rs else None
                if dref:
                    self.enqueue(ns, dref["name"])
                elif rs is None and change.type != "DELETED":
                    self._orphan_pod(change.obj)

    async def _run(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            try:
                self.reconcile(*key)
            except Exception:  # a controller keeps going, as the real one requeues
                import logging

                logging.getLogger(__name__).exception("reconcile %s failed", key)
            if self._queue.empty():
                self.idle.set()

    def _orphan_pod(self, pod: Obj) -> None:
        # Garbage collection: a pod whose controlling ReplicaSet is gone goes too.
        if not pod["metadata"].get("deletionTimestamp"):
            asyncio.get_running_loop().call_soon(self._gc_pod, pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _gc_pod(self, ns: str, name: str) -> None:
        from .resources import PODS

        if self.store.get("pods", ns, name) is not None:
            self.registry.delete(PODS, ns, name)

    # the sync ------------------------------------------------------------
    def reconcile(self, ns: str, name: str) -> None:
        d = self.store.get("deployments", ns, name)
        rss = self.store.owned_by("replicasets", ns, "Deployment", name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            for rs in rss:
                self._delete_rs(rs)
            return
        uid = d["metadata"]["uid"]
        rss = [rs for rs in rss if _owned_by(rs, uid)]
        # d is read, never changed: the store replaces objects, so it is a snapshot as is.
        # Conditions are replaced, never changed in place: shallow copies are enough.
        status = dict(d.get("status") or {})
        spec = d["spec"]
        desired = spec.get("replicas", 1)
        has_deadline = spec.get("progressDeadlineSeconds") is not None
        thash = self._template_hash(d)
        new_rs = next((rs for rs in rss if rs["metadata"].get("labels", {}).get(HASH_LABEL) == thash), None)
        old_rss = [rs for rs in rss if rs is not new_rs]
        revision = str(
            max([int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in rss] + [0])
            + (0 if new_rs else 1)
        )
        if new_rs is None:
            new_rs = self._create_rs(d, thash, revision, desired)
            if has_deadline:
                _set_cond(
                    status,
                    _condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetCreated",
                        f'Created new replica set "{new_rs["metadata"]["name"]}"',
                    ),
                )
                self._progress_at[uid] = time.monotonic()
        else:
            if new_rs["metadata"].get("annotations", {}).get(REVISION):
                revision = new_rs["metadata"]["annotations"][REVISION]
            if has_deadline and _get_cond(status, "Progressing") is None:
                _set_cond(
                    status,
                    _condition(
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        f'Found new replica set "{new_rs["metadata"]["name"]}"',
                    ),
                )
                self._progress_at[uid] = time.monotonic()
            new_rs = self._scale_rs(d, new_rs, desired)
        for old in old_rss:
            self._scale_rs(d, old, 0)
        all_rss = [self._sync_rs(rs) for rs in [new_rs, *old_rss]]
        new_rs = all_rss[0]

        # calculateStatus
        def st(rs: Obj, k: str) -> int:
            return int((rs.get("status") or {}).get(k, 0))

        available = sum(st(rs, "availableReplicas") for rs in all_rss)
        total = sum(int(rs["spec"].get("replicas", 0)) for rs in all_rss)
        new_status: Obj = {
            "observedGeneration": d["metadata"]["generation"],
            "replicas": sum(st(rs, "replicas") for rs in all_rss),
            "updatedReplicas": st(new_rs, "replicas"),
            "readyReplicas": sum(st(rs, "readyReplicas") for rs in all_rss),
            "availableReplicas": available,
            "unavailableReplicas": max(total - available, 0),
            "conditions": list(status.get("conditions") or []),
        }
        if status.get("collisionCount"):
            new_status["collisionCount"] = status["collisionCount"]
        if available >= desired - max_unavailable(d):
            _set_cond(
                new_status,
                _condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
            )
        else:
            _set_cond(
                new_status,
                _condition(
                    "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
                ),
            )

        # syncRolloutStatus
        if not has_deadline:
            _remove_cond(new_status, "Progressing")
        current = _get_cond(new_status, "Progressing")
        rs_name = new_rs["metadata"]["name"]
        complete_already = (
            new_status["replicas"] == new_status["updatedReplicas"]
            and current is not None
            and current["reason"] == "NewReplicaSetAvailable"
        )
        old_status = d.get("status") or {}
        if has_deadline and not complete_already:
            if self._complete(d, new_status):
                _set_cond(
                    new_status,
                    _condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        f'ReplicaSet "{rs_name}" has successfully progressed.',
                    ),
                )
                self._cancel_timer(ns, name)
            elif self._progressing(old_status, new_status):
                cond = _condition("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
                if current is not None:
                    if current["status"] == "True":
                        cond["lastTransitionTime"] = current["lastTransitionTime"]
                    _remove_cond(new_status, "Progressing")
                _set_cond(new_status, cond)
                self._progress_at[uid] = time.monotonic()
                self._arm_deadline(d)
            elif self._timed_out(d, new_status):
                _set_cond(
                    new_status,
                    _condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        f'ReplicaSet "{rs_name}" has timed out progressing.',
                    ),
                )
            else:
                self._arm_deadline(d)
        new_status = _omit_zero(
            new_status,
            (
                "observedGeneration",
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
                "unavailableReplicas",
                "conditions",
            ),
        )
        current_d = self.store.get("deployments", ns, name) or d
        if current_d["metadata"]["generation"] != d["metadata"]["generation"]:
            self.enqueue(ns, name)  # spec moved under us; the next pass sees it
            return
        if (current_d["metadata"].get("annotations") or {}).get(REVISION) == revision and current_d.get(
            "status"
        ) == new_status:
            return  # the write below would be a no-op: skip copying the Deployment for it
        new_d = renew(current_d)
        meta = new_d["metadata"]
        meta["annotations"] = {**meta.get("annotations", {}), REVISION: revision}
        new_d["status"] = new_status
        old_d = self.store.get("deployments", ns, name)
        self.registry.system_write(
            "deployments", old_d, new_d, manager=MANAGER, subresource="status", api_version="apps/v1"
        )

    def _template_hash(self, d: Obj) -> str:
        meta = d["metadata"]
        gen = int(meta.get("generation") or 0)
        cached = self._hashes.get(meta["uid"])
        if cached is not None and cached[0] == gen:
            return cached[2]
        data = _template_bytes(d["spec"].get("template") or {})
        thash = cached[2] if cached is not None and cached[1] == data else template_hash({}, data)
        self._hashes[meta["uid"]] = (gen, data, thash)
        return thash

    @staticmethod
    def _complete(d: Obj, s: Obj) -> bool:
        want = d["spec"].get("replicas", 1)
        return bool(
            s["updatedReplicas"] == want
            and s["replicas"] == want
            and s["availableReplicas"] == want
            and s["observedGeneration"] >= d["metadata"]["generation"]
        )

    @staticmethod
    def _progressing(old: Obj, new: Obj) -> bool:
        old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
        new_old = new["replicas"] - new["updatedReplicas"]
        return bool(
            new["updatedReplicas"] > old.get("updatedReplicas", 0)
            or new_old < old_old
            or new["readyReplicas"] > old.get("readyReplicas", 0)
            or new["availableReplicas"] > old.get("availableReplicas", 0)
        )

    def _timed_out(self, d: Obj, s: Obj) -> bool:
        cond = _get_cond(s, "Progressing")
        if cond is None:
            return False
        if cond["reason"] == "NewReplicaSetAvailable":
            return False
        if cond["reason"] == "ProgressDeadlineExceeded":
            return True
        since = self._progress_at.get(d["metadata"]["uid"])
        if since is None:
            since = clock.parse_time(cond["lastUpdateTime"]).timestamp() - time.time() + time.monotonic()
        return bool(since + d["spec"]["progressDeadlineSeconds"] < time.monotonic())

    def _arm_deadline(self, d: Obj) -> None:
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        since = self._progress_at.get(d["metadata"]["uid"], time.monotonic())
        delay = max(since + d["spec"]["progressDeadlineSeconds"] - time.monotonic(), 0) + 0.01
        self._cancel_timer(ns, name)
        loop = asyncio.get_running_loop()
        self._timers[(ns, name)] = loop.call_later(delay, self.enqueue, ns, name)

    def _cancel_timer(self, ns: str, name: str) -> None:
        t = self._timers.pop((ns, name), None)
        if t is not None:
            t.cancel()

    # replica sets -------------------------------------------------------
    def _create_rs(self, d: Obj, thash: str, revision: str, replicas: int) -> Obj:
        meta = d["metadata"]
        template = clone(d["spec"].get("template") or {})
        tmeta = template.setdefault("metadata", {})
        tmeta.setdefault("labels", {})[HASH_LABEL] = thash
        selector = clone(d["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = thash
        name = f"{meta['name']}-{thash}"
        annotations = {
            k: v
            for k, v in (meta.get("annotations") or {}).items()
            if not k.startswith("kubectl.kubernetes.io/") and k != REVISION
        }
        annotations.update({DESIRED: str(replicas), MAX_REPLICAS: str(replicas + self._surge(d)), REVISION: revision})
        rs: Obj = {
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": dict(tmeta["labels"]),
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
                "generation": 1,
            },
            "spec": {"replicas": replicas, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }
        rs = self.registry.system_write("replicasets", None, rs, manager=MANAGER, api_version="apps/v1")
        if replicas > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet", f"Scaled up replica set {name} from 0 to {replicas}")
        return rs

    @staticmethod
    def _surge(d: Obj) -> int:
        strategy = d["spec"].get("strategy") or {}
        if strategy.get("type") != "RollingUpdate":
            return 0
        return _int_or_percent(
            (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%"), d["spec"].get("replicas", 1), True
        )

    def _scale_rs(self, d: Obj, rs: Obj, replicas: int) -> Obj:
        current = int(rs["spec"].get("replicas", 0))
        ann = rs["metadata"].get("annotations") or {}
        want_desired = str(d["spec"].get("replicas", 1))
        if current == replicas and ann.get(DESIRED) == want_desired:
            return rs
        new = renew(rs, "spec")
        new["spec"]["replicas"] = replicas
        new_ann = new["metadata"]["annotations"] = dict(new["metadata"].get("annotations") or {})
        new_ann[DESIRED] = want_desired
        new_ann[MAX_REPLICAS] = str(int(want_desired) + self._surge(d))
        if current != replicas:
            new["metadata"]["generation"] = rs["metadata"].get("generation", 1) + 1
        out = self.registry.system_write("replicasets", rs, new, manager=MANAGER, api_version="apps/v1")
        if current != replicas:
            direction = "up" if replicas > current else "down"
            self.recorder.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {rs['metadata']['name']} from {current} to {replicas}",
            )
        return out

    def _sync_rs(self, rs: Obj) -> Obj:
        from .resources import PODS

        ns = rs["metadata"]["namespace"]
        uid = rs["metadata"]["uid"]
        pods = [p for p in self.store.owned_by("pods", ns, "ReplicaSet", rs["metadata"]["name"]) if _owned_by(p, uid)]
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        want = int(rs["spec"].get("replicas", 0))
        if len(active) < want:
            for _ in range(want - len(active)):
                active.append(self._create_pod(rs))
        elif len(active) > want:
            # getPodsToDelete: unready before ready, more restarts first, newest first.
            def rank(p: Obj) -> tuple[int, int, str]:
                restarts = sum(c.get("restartCount", 0) for c in (p.get("status") or {}).get("containerStatuses") or [])
                return (1 if is_pod_ready(p) else 0, -restarts, _neg(p["metadata"]["creationTimestamp"]))

            victims = sorted(active, key=rank)[: len(active) - want]
            for p in victims:
                self.registry.delete(PODS, ns, p["metadata"]["name"])
                self.rs_recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}")
            names = {p["metadata"]["name"] for p in victims}
            active = [p for p in active if p["metadata"]["name"] not in names]
        ready = sum(1 for p in active if is_pod_ready(p))
        sel = selectors.parse_label_selector(None)
        labelled = sum(1 for p in active if selectors.matches_labels(sel, p["metadata"].get("labels")))
        status: Obj = {
            "replicas": len(active),
            "fullyLabeledReplicas": labelled,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v or k == "replicas"}
        current = self.store.get("replicasets", ns, rs["metadata"]["name"]) or rs
        if current.get("status") == status:
            return current
        new = renew(current)
        new["status"] = status
        return self.registry.system_write(
            "replicasets", current, new, manager=MANAGER, subresource="status", api_version="apps/v1"
        )

    def _create_pod(self, rs: Obj) -> Obj:
        template = clone(rs["spec"].get("template") or {})
        tmeta = template.get("metadata") or {}
        rs_name = rs["metadata"]["name"]
        ns = rs["metadata"]["namespace"]
        while True:
            name = f"{rs_name}-{clock.random_suffix()}"
            if self.store.get("pods", ns, name) is None:
                break
        meta: Obj = {
            "name": name,
            "generateName": f"{rs_name}-",
            "namespace": ns,
            "labels": dict(tmeta.get("labels") or {}),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs_name,
                    "uid": rs["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        pod: Obj = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": meta,
            "spec": template.get("spec") or {},
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        from . import defaults

        defaults.pod_spec(pod["spec"])
        pod["spec"].setdefault("enableServiceLinks", True)
        pod["spec"].setdefault("preemptionPolicy", "PreemptLowerPriority")
        pod["spec"].setdefault("priority", 0)
        pod["spec"].setdefault("serviceAccountName", "default")
        pod["spec"].setdefault("serviceAccount", "default")
        out = self.registry.system_write("pods", None, pod, manager=MANAGER)
        self.rs_recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {name}")
        return out

    def _delete_rs(self, rs: Obj) -> None:
        from .resources import PODS

        ns = rs["metadata"]["namespace"]
        for p in self.store.owned_by("pods", ns, "ReplicaSet", rs["metadata"]["name"]):
            if _owned_by(p, rs["metadata"]["uid"]) and self.store.get("pods", ns, p["metadata"]["name"]):
                self.registry.delete(PODS, ns, p["metadata"]["name"])
        if self.store.get("replicasets", ns, rs["metadata"]["name"]) is not None:
            self.registry.remove("replicasets", rs)


def _neg(ts: str) -> str:
    """Sort key that orders newer timestamps first."""
    return "".join(chr(0x10FFFF - ord(c)) for c in ts)
