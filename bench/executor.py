# ruff: noqa: B023, E402
"""Executor benchmark against the simulator: prints the figures issue 4 asks for.

    python bench/executor.py [--rounds N] [--targets N]

1. claim -> first scale PATCH at the API server (median, p95): the executor's share of
   "webhook -> first PATCH" (the web layer's intake is measured by bench/ of the web layer).
2. last stable pod Ready -> rollback verified (median), next to `kubectl rollout status`
   watching the same Deployment in the same run (the real kubectl, when installed).
3. N targets rolling back at once vs one target: wall time ratio (pods take --ready-delay
   seconds to become Ready, like a small real service; max_concurrent_rollbacks = N).
Callbacks in loops are used only within the iteration that defines them (B023).
Times are taken in-process from the simulator's store (the moment it commits a write),
so they include HTTP and JSON on loopback but no network.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from receiver.domain.decisions import Decision, DecisionKind
from receiver.domain.rollback import RollbackRecord, Step
from receiver.domain.settings import Config, parse_config
from receiver.kube import RetryPolicy, new_api_client
from receiver.logs import configure
from receiver.rollback.executor import Executor
from sim.kube import KubeSim

NS = "finance"
RETRY = RetryPolicy(base_seconds=0.01, cap_seconds=0.2)


def config_for(names: list[str], namespace: str = NS, limit: int = 10) -> Config:
    body = {
        "settings": {"max_concurrent_rollbacks": max(limit, 1), "lease_duration_seconds": 15},
        "rules": [{"name": "error-rate", "matchers": ['alertname="HighErrorRate"']}],
        "targets": [{"name": n, "namespace": namespace, "matchers": [f'service="{n}"'],
                     "stable": f"{n}-v1", "canary": f"{n}-v2", "replicas": 5} for n in names],
    }
    return parse_config(yaml.safe_dump(body))


def decision(target: str) -> Decision:
    return Decision(target=target, kind=DecisionKind.ROLL_BACK, reason="bench", rule="error-rate")


def seed(sim: KubeSim, names: list[str]) -> None:
    """Week-1 pairs (v1 4 pods, v2 1) named after the finance-service manifests."""
    docs = [d for d in yaml.safe_load_all(
        (KubeSim.default_manifests() / "finance-service.yaml").read_text()) if d]
    base = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for n in names:
        for ver in ("v1", "v2"):
            d = copy.deepcopy(base[f"finance-service-{ver}"])
            d["metadata"]["name"] = f"{n}-{ver}"
            labels = {"app": n, "version": ver}
            d["metadata"]["labels"] = labels
            d["spec"]["selector"]["matchLabels"] = labels
            d["spec"]["template"]["metadata"]["labels"] = labels
            sim.apply(d)


def available(sim: KubeSim, names: list[str]) -> bool:
    for n in names:
        for ver, want in (("v1", 4), ("v2", 1)):
            d = sim.get("deployments", NS, f"{n}-{ver}") or {}
            st = d.get("status") or {}
            if (d.get("spec", {}).get("replicas") != want or st.get("availableReplicas", 0) != want
                    or st.get("observedGeneration") != d["metadata"].get("generation")):
                return False
    return True


async def reset(sim: KubeSim, names: list[str]) -> None:
    for n in names:
        sim.scale_as(NS, f"{n}-v1", 4, field_manager="bench")
        sim.scale_as(NS, f"{n}-v2", 1, field_manager="bench")
    await sim.wait_for(lambda: available(sim, names) and not any(
        p["metadata"].get("deletionTimestamp") for p in sim.list("pods", NS)), 120)


def ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


async def new_sim(names: list[str], ready_delay: float, tmp: Path) -> tuple[KubeSim, Any]:
    sim = KubeSim(ready_delay=ready_delay, termination_grace=0.02)
    sim.load_manifests(KubeSim.default_manifests())
    seed(sim, names)
    await sim.start()
    await reset(sim, names)
    api = await new_api_client(sim.write_kubeconfig(tmp / "kubeconfig"))
    return sim, api


async def claim_to_patch(rounds: int, tmp: Path) -> tuple[list[float], list[float]]:
    """claim -> first scale PATCH committed (simulator in-process, so the commit moment is
    seen directly) and claim -> first scale PATCH answered (simulator in its own process,
    as an API server is; the answer comes after the commit, so this is an upper bound)."""
    names = ["svc"]
    sim, api = await new_sim(names, 0.02, tmp)
    cfg = config_for(names)
    ex = Executor(api, lambda: cfg, "bench", retry=RETRY)
    committed = []
    try:
        for i in range(rounds):
            await reset(sim, names)
            first: list[float] = []

            def on_write(change: Any) -> None:
                if (change.storage == "deployments" and change.old is not None and not first
                        and change.obj["spec"].get("replicas") != change.old["spec"].get("replicas")):
                    first.append(time.perf_counter())

            unsubscribe = sim.store.subscribe(on_write)
            t0 = time.perf_counter()
            record = await ex.claim(decision("svc"), cfg.targets[0])
            assert record is not None
            await ex.start(record)
            unsubscribe()
            if i:  # the first round warms connections and imports
                committed.append(first[0] - t0)
    finally:
        await ex.close(1)
        await api.close()
        await sim.stop()

    from receiver.kube import Kube

    proc, api = await child_sim(1, 0.02, tmp / "kubeconfig-one")
    names = ["svc000"]
    cfg = config_for(names)
    kube = Kube(api, RETRY, field_manager="bench")
    answered = []
    marks: list[float] = []

    def on_change(record: RollbackRecord, step: Step | None) -> None:
        if step is not None and step.name.startswith("scale-") and not marks:
            marks.append(time.perf_counter())

    # one long-lived receiver, as in production (its start-up read the Leases)
    ex = Executor(api, lambda: cfg, "bench", on_change, retry=RETRY)
    await ex.resume_unfinished()
    try:
        for i in range(rounds):
            await kube.scale_deployment(NS, "svc000-v2", 1)
            await kube.scale_deployment(NS, "svc000-v1", 4)
            await wait_week_one(kube, names)
            marks.clear()
            t0 = time.perf_counter()
            record = await ex.claim(decision("svc000"), cfg.targets[0])
            assert record is not None
            await ex.start(record)
            if i:
                answered.append(marks[0] - t0)
    finally:
        await ex.close(1)
        await api.close()
        proc.terminate()
        await proc.wait()
    return committed, answered


async def ready_to_verified(rounds: int, tmp: Path) -> tuple[list[float], list[float]]:
    names = ["svc"]
    sim, api = await new_sim(names, 0.8, tmp)
    kubectl = shutil.which("kubectl")
    ours, theirs = [], []
    try:
        for _ in range(rounds):
            await reset(sim, names)
            last_ready: list[float] = []
            verified: list[float] = []
            kubectl_done: list[float] = []
            watchers: list[asyncio.Task[None]] = []

            def on_write(change: Any) -> None:
                obj = change.obj
                if (change.storage == "pods" and obj["metadata"]["labels"].get("app") == "svc"
                        and obj["metadata"]["labels"].get("version") == "v1"
                        and ready(obj) and not (change.old and ready(change.old))):
                    last_ready.append(time.perf_counter())

            async def rollout_status() -> None:
                assert kubectl is not None
                proc = await asyncio.create_subprocess_exec(
                    kubectl, f"--kubeconfig={tmp / 'kubeconfig'}", f"--cache-dir={tmp / 'cache'}",
                    "-n", NS, "rollout", "status", "deployment/svc-v1",
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
                assert proc.stdout is not None
                async for line in proc.stdout:
                    if b"successfully rolled out" in line:
                        kubectl_done.append(time.perf_counter())
                await proc.wait()

            def on_change(record: RollbackRecord, step: Step | None) -> None:
                if step is None:
                    return
                if step.name == "scale-stable" and kubectl:
                    watchers.append(asyncio.create_task(rollout_status()))
                if step.name == "verify" and step.ok:
                    verified.append(time.perf_counter())

            cfg = config_for(names)
            ex = Executor(api, lambda: cfg, "bench", on_change, retry=RETRY)
            unsubscribe = sim.store.subscribe(on_write)
            record = await ex.claim(decision("svc"), cfg.targets[0])
            assert record is not None
            await ex.start(record)
            await asyncio.gather(*watchers)
            unsubscribe()
            await ex.close(1)
            ours.append(verified[0] - last_ready[-1])
            if kubectl_done:
                theirs.append(kubectl_done[0] - last_ready[-1])
    finally:
        await api.close()
        await sim.stop()
    return ours, theirs


SIM_CHILD = """
import asyncio, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from executor import seed, available
from sim.kube import KubeSim
async def main():
    sim = KubeSim(ready_delay={delay!r}, termination_grace=0.02)
    sim.load_manifests(KubeSim.default_manifests())
    names = [f"svc{{i:03d}}" for i in range({n})]
    seed(sim, names)
    await sim.start()
    await sim.wait_for(lambda: available(sim, names), 300)
    sim.write_kubeconfig({kubeconfig!r})
    import gc
    gc.collect(); gc.freeze()  # the seed lives forever: keep it out of later collections, as serve does
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def child_sim(n: int, ready_delay: float,
                    kubeconfig: Path) -> tuple[asyncio.subprocess.Process, Any]:
    """A simulator seeded with n week-1 targets in its own process, and a client for it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SIM_CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"),
                                               delay=ready_delay, n=n,
                                               kubeconfig=str(kubeconfig)),
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    await asyncio.wait_for(proc.stdout.readline(), 600)
    return proc, await new_api_client(kubeconfig)


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process, from /proc (Linux)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_week_one(kube: Any, names: list[str]) -> None:
    while True:  # a benchmark may poll: it is not the code under test
        items = (await kube.list_deployments(NS)).get("items") or []
        by = {d["metadata"]["name"]: d for d in items}
        if all((by[f"{n}-v1"].get("status") or {}).get("availableReplicas") == 4
               and (by[f"{n}-v2"].get("status") or {}).get("availableReplicas") == 1
               and (by[f"{n}-v2"].get("status") or {}).get("replicas") == 1 for n in names):
            return
        await asyncio.sleep(0.1)


async def many_at_once(n: int, ready_delay: float, tmp: Path) -> tuple[float, float, float, float]:
    """The simulator runs in its own process, so its CPU is not the receiver's."""
    from receiver.kube import Kube

    names = [f"svc{i:03d}" for i in range(n)]
    proc, api = await child_sim(n, ready_delay, tmp / "kubeconfig-many")
    kube = Kube(api, RETRY, field_manager="bench")
    cfg = config_for(names, limit=n)
    try:
        ex = Executor(api, lambda: cfg, "bench", retry=RETRY)
        t0 = time.perf_counter()
        record = await ex.claim(decision(names[0]), cfg.targets[0])
        assert record is not None
        assert (await ex.start(record)).phase.value == "succeeded"
        one = time.perf_counter() - t0
        await ex.close(1)
        await kube.scale_deployment(NS, f"{names[0]}-v2", 1)
        await kube.scale_deployment(NS, f"{names[0]}-v1", 4)
        await wait_week_one(kube, names)

        ex = Executor(api, lambda: cfg, "bench", retry=RETRY)
        gc.collect()
        gc.freeze()  # as `receiver serve` does once started
        sim_cpu0, own_cpu0 = cpu_seconds(proc.pid), time.process_time()
        t0 = time.perf_counter()

        async def one_target(i: int) -> str:
            rec = await ex.claim(decision(names[i]), cfg.targets[i])
            assert rec is not None
            return (await ex.start(rec)).phase.value

        phases = await asyncio.gather(*(one_target(i) for i in range(n)))
        many = time.perf_counter() - t0
        sim_cpu, own_cpu = cpu_seconds(proc.pid) - sim_cpu0, time.process_time() - own_cpu0
        await ex.close(1)
        assert set(phases) == {"succeeded"}, phases
    finally:
        await api.close()
        proc.terminate()
        await proc.wait()
    return one, many, own_cpu, sim_cpu


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    q = statistics.quantiles(values, n=20) if len(values) > 1 else values
    return f"median {statistics.median(values) * 1000:.1f} ms, p95 {q[-1] * 1000:.1f} ms (n={len(values)})"


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--targets", type=int, default=200)
    p.add_argument("--ready-delay", type=float, default=2.0)
    args = p.parse_args()
    configure(json=True, level="error")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        committed, answered = await claim_to_patch(args.rounds + 1, tmp)
        print(f"claim -> first scale PATCH committed: {ms(committed)}   (target < 10 ms; "
              "simulator in-process)")
        print(f"claim -> first scale PATCH answered:  {ms(answered)}   (simulator in its own "
              "process)")
        ours, theirs = await ready_to_verified(max(args.rounds // 2, 3), tmp)
        print(f"last stable pod Ready -> verified:    {ms(ours)}   (target < 50 ms)")
        print(f"  kubectl rollout status, same runs:  {ms(theirs)}")
        one, many, own, sim = await many_at_once(args.targets, args.ready_delay, tmp)
        print(f"1 target: {one:.2f} s; {args.targets} targets at once: {many:.2f} s; "
              f"ratio {many / one:.2f}   (target <= 1.5; pods Ready after {args.ready_delay} s)")
        print(f"  CPU during the {args.targets}: receiver {own:.2f} s, simulator {sim:.2f} s "
              "(separate process)")


if __name__ == "__main__":
    asyncio.run(main())
