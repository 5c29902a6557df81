"""A kubelet for every pod: schedules it, starts its containers and reports readiness,
crash loops or image-pull failures on timers (loop.call_later), and removes a deleted
pod after its (simulated) grace period. Status reads as the kubelet writes it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from . import clock
from .recorder import Recorder
from .registry import Registry
from .store import Change, Obj, clone, renew

NODE = "sim-node-1"
NODE_IP = "10.0.0.10"
BEHAVIORS = ("ready", "crashloop", "imagepull", "never-ready")
BEHAVIOR_ANNOTATION = "sim.rollback-receiver.io/pod-behavior"
DELAY_ANNOTATION = "sim.rollback-receiver.io/ready-delay-seconds"


class Kubelet:
    def __init__(
        self,
        registry: Registry,
        *,
        ready_delay: Callable[[], float],
        termination_grace: Callable[[], float],
        behavior_for: Callable[[Obj], tuple[str, float]],
    ) -> None:
        self.registry = registry
        self.store = registry.store
        self.ready_delay = ready_delay
        self.termination_grace = termination_grace
        self.behavior_for = behavior_for
        self.recorder = Recorder(registry, "kubelet", NODE)
        self._timers: dict[str, list[asyncio.Handle]] = {}
        self._terminating: set[str] = set()
        self._ip = 0
        self._unsubscribe = self.store.subscribe(self._on_change, "pods")
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for pod in list(self.store.items("pods")):
            self._adopt(pod)

    def stop(self) -> None:
        self._unsubscribe()
        for handles in self._timers.values():
            for h in handles:
                h.cancel()
        self._timers.clear()

    def _later(self, uid: str, delay: float, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is None:
            return
        self._timers.setdefault(uid, []).append(self._loop.call_later(delay, fn, *args))

    def _on_change(self, change: Change) -> None:
        if change.storage != "pods" or self._loop is None:
            return
        uid = change.obj["metadata"].get("uid", "")
        if change.type == "DELETED":
            for h in self._timers.pop(uid, []):
                h.cancel()
            self._terminating.discard(uid)
            return
        self._adopt(change.obj)

    def _adopt(self, pod: Obj) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            if uid not in self._terminating:
                self._terminating.add(uid)
                for h in self._timers.pop(uid, []):
                    h.cancel()
                grace = min(float(meta.get("deletionGracePeriodSeconds") or 0), self.termination_grace())
                for c in pod["spec"].get("containers") or []:
                    self.recorder.event(pod, "Normal", "Killing", f"Stopping container {c['name']}")
                self._later(uid, grace, self._remove, meta["namespace"], meta["name"], uid)
            return
        if uid in self._timers or (
            pod["spec"].get("nodeName") and uid not in self._timers and pod.get("status", {}).get("startTime")
        ):
            return
        behavior, delay = self.behavior_for(pod)
        self._timers[uid] = []
        assert self._loop is not None
        self._timers[uid].append(self._loop.call_soon(self._schedule, meta["namespace"], meta["name"], uid))
        self._later(uid, delay / 2, self._start, meta["namespace"], meta["name"], uid, behavior, delay)

    # helpers ---------------------------------------------------------------
    def _mutate(
        self, ns: str, name: str, uid: str, fn: Callable[[Obj], None], subresource: str = "status"
    ) -> Obj | None:
        pod = self.store.get("pods", ns, name)
        if pod is None or pod["metadata"]["uid"] != uid or (pod["metadata"].get("deletionTimestamp") and subresource):
            return None
        new = renew(pod, "spec")  # fn sets keys of spec, anything within status
        if "status" in pod:
            new["status"] = clone(pod["status"])
        fn(new)
        return self.registry.system_write("pods", pod, new, manager="kubelet", subresource=subresource)

    def _remove(self, ns: str, name: str, uid: str) -> None:
        pod = self.store.get("pods", ns, name)
        if pod is not None and pod["metadata"]["uid"] == uid:
            self.registry.remove("pods", pod)

    @staticmethod
    def _conditions(pod: Obj, *, started: bool, ready: bool, unready: list[str]) -> list[Obj]:
        now = clock.rfc3339()
        old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}

        def cond(t: str, ok: bool, reason: str = "", message: str = "") -> Obj:
            status = "True" if ok else "False"
            c: Obj = {"type": t, "status": status, "lastProbeTime": None}
            prev = old.get(t)
            c["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev["status"] == status else now
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            return c

        msg = f"containers with unready status: [{' '.join(unready)}]"
        return [
            cond("PodReadyToStartContainers", started),
            cond("Initialized", True),
            cond("Ready", ready, "" if ready else "ContainersNotReady", "" if ready else msg),
            cond("ContainersReady", ready, "" if ready else "ContainersNotReady", "" if ready else msg),
            cond("PodScheduled", True),
        ]

    @staticmethod
    def _image_id(image: str) -> str:
        digest = "".join(f"{b:02x}" for b in clock.fnv32a(image.encode()).to_bytes(4, "big")) * 8
        repo = image if "/" in image else f"docker.io/library/{image}"
        return f"{repo.split(':')[0]}@sha256:{digest}"

    # lifecycle ---------------------------------------------------------------
    def _schedule(self, ns: str, name: str, uid: str) -> None:
        def bind(p: Obj) -> None:
            p["spec"]["nodeName"] = NODE

        pod = self._mutate(ns, name, uid, bind, subresource="")
        if pod is None:
            return
        self.recorder.event(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {NODE}")

        def pending(p: Obj) -> None:
            names = [c["name"] for c in p["spec"].get("containers") or []]
            p["status"] = {
                "phase": "Pending",
                "conditions": self._conditions(p, started=False, ready=False, unready=names),
                "hostIP": NODE_IP,
                "hostIPs": [{"ip": NODE_IP}],
                "startTime": clock.rfc3339(),
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "state": {"waiting": {"reason": "ContainerCreating"}},
                        "lastState": {},
                        "ready": False,
                        "restartCount": 0,
                        "image": c.get("image", ""),
                        "imageID": "",
                        "started": False,
                    }
                    for c in p["spec"].get("containers") or []
                ],
                "qosClass": "BestEffort",
            }

        self._mutate(ns, name, uid, pending)

    def _pod_ip(self) -> str:
        self._ip += 1
        return f"10.244.{(self._ip // 250) % 250}.{self._ip % 250 + 2}"

    def _start(self, ns: str, name: str, uid: str, behavior: str, delay: float) -> None:
        pod = self.store.get("pods", ns, name)
        if pod is None:
            return
        containers = pod["spec"].get("containers") or []
        if behavior == "imagepull":
            self._image_pull(ns, name, uid, "ErrImagePull")
            self._later(uid, delay / 2, self._image_pull, ns, name, uid, "ImagePullBackOff")
            return
        ip = self._pod_ip()
        started_at = clock.rfc3339()

        def running(p: Obj) -> None:
            names = [c["name"] for c in containers]
            st = p["status"]
            st["phase"] = "Running"
            st["podIP"] = ip
            st["podIPs"] = [{"ip": ip}]
            st["conditions"] = self._conditions(p, started=True, ready=False, unready=names)
            st["containerStatuses"] = [
                {
                    "name": c["name"],
                    "state": {"running": {"startedAt": started_at}},
                    "lastState": {},
                    "ready": False,
                    "restartCount": 0,
                    "image": c.get("image", ""),
                    "imageID": self._image_id(c.get("image", "")),
                    "containerID": f"containerd://{clock.new_uid().replace('-', '')}",
                    "started": True,
                }
                for c in containers
            ]

        pod = self._mutate(ns, name, uid, running)
        if pod is None:
            return
        for c in containers:
            self.recorder.event(
                pod, "Normal", "Pulled", f'Container image "{c.get("image", "")}" already present on machine'
            )
            self.recorder.event(pod, "Normal", "Created", f"Created container: {c['name']}")
            self.recorder.event(pod, "Normal", "Started", f"Started container {c['name']}")
        if behavior == "ready":
            self._later(uid, delay / 2, self._ready, ns, name, uid)
        elif behavior == "crashloop":
            self._later(uid, max(delay / 2, 0.01), self._crash, ns, name, uid, 1, max(delay, 0.05))

    def _ready(self, ns: str, name: str, uid: str) -> None:
        def ready(p: Obj) -> None:
            st = p["status"]
            st["conditions"] = self._conditions(p, started=True, ready=True, unready=[])
            for cs in st.get("containerStatuses") or []:
                cs["ready"] = True

        self._mutate(ns, name, uid, ready)

    def _crash(self, ns: str, name: str, uid: str, restarts: int, backoff: float) -> None:
        now = clock.rfc3339()

        def crashed(p: Obj) -> None:
            st = p["status"]
            names = [c["name"] for c in p["spec"].get("containers") or []]
            st["conditions"] = self._conditions(p, started=True, ready=False, unready=names)
            for cs in st.get("containerStatuses") or []:
                started = (cs.get("state") or {}).get("running", {}).get("startedAt") or (
                    cs.get("lastState") or {}
                ).get("terminated", {}).get("startedAt", now)
                cs["lastState"] = {
                    "terminated": {
                        "exitCode": 1,
                        "reason": "Error",
                        "startedAt": started,
                        "finishedAt": now,
                        "containerID": cs.get("containerID", ""),
                    }
                }
                wait_s = min(10 * 2 ** (restarts - 1), 300)
                wait = f"{wait_s // 60}m{wait_s % 60}s" if wait_s >= 60 else f"{wait_s}s"
                cs["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {wait} restarting failed container={cs['name']} pod={name}_{ns}({uid})",
                    }
                }
                cs["ready"] = False
                cs["started"] = False
                cs["restartCount"] = restarts

        pod = self._mutate(ns, name, uid, crashed)
        if pod is None:
            return
        for c in pod["spec"].get("containers") or []:
            self.recorder.event(
                pod, "Warning", "BackOff", f"Back-off restarting failed container {c['name']} in pod {name}_{ns}({uid})"
            )
        self._later(uid, min(backoff, 5.0), self._crash, ns, name, uid, restarts + 1, backoff * 2)

    def _image_pull(self, ns: str, name: str, uid: str, reason: str) -> None:
        def failing(p: Obj) -> None:
            st = p["status"]
            for cs in st.get("containerStatuses") or []:
                image = cs.get("image", "")
                message = (
                    f'Back-off pulling image "{image}"'
                    if reason == "ImagePullBackOff"
                    else f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": not found'
                )
                cs["state"] = {"waiting": {"reason": reason, "message": message}}

        pod = self._mutate(ns, name, uid, failing)
        if pod is None:
            return
        for c in pod["spec"].get("containers") or []:
            image = c.get("image", "")
            if reason == "ErrImagePull":
                self.recorder.event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
                self.recorder.event(pod, "Warning", "Failed", f'Failed to pull image "{image}": not found')
                self.recorder.event(pod, "Warning", "Failed", "Error: ErrImagePull")
            else:
                self.recorder.event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"')
                self.recorder.event(pod, "Warning", "Failed", "Error: ImagePullBackOff")
