# ruff: noqa: E402
"""Webhook arrival -> first scale PATCH at the API server, through the real receiver.

    python bench/webhook_to_patch.py [--rounds 30] [--ready-delay 0.02]

Issue 4: "From the webhook's arrival to the first scale PATCH at the API: median under
10 ms." The receiver runs exactly as `receiver serve` builds it (start_receiver: web
layer, decide, Lease claim, executor) against the simulator seeded with week 1 (v1 4
pods, v2 1), both in this process (one event loop, so one clock; the figure includes
both sides' CPU, HTTP and JSON on loopback). Each round POSTs an Alertmanager v4
payload to /webhook with the bearer token; the clock starts just before the POST is
sent and stops when the simulator's handler receives the PATCH on
deployments/<canary>/scale (RecordedRequest.received, before the body is read). Between
rounds the rollback is awaited, week 1 restored and awaited until the receiver's own
watch has seen it, and (--lease delete, the default) the Lease deleted: each round is
then a target's first rollback, while --lease keep leaves the released Lease as every
later rollback finds it (fight detection is raised out of the way).
The first round (connections, imports) is not counted. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from receiver.cli.serve import RunningReceiver, start_receiver
from receiver.domain.settings import load_config
from receiver.kube.lease import lease_name, lease_namespace
from receiver.logs import configure
from sim.kube import KubeSim
from sim.kube.resources import find
from tests.fixtures.receiver import firing_payload

NS, TARGET, STABLE, CANARY = "finance", "finance-service", "finance-service-v1", "finance-service-v2"
LEASES = find("coordination.k8s.io", "v1", "leases")


def payload(i: int) -> dict[str, Any]:
    """tests/fixtures/receiver.py's Alertmanager body with a new fingerprint per round."""
    return firing_payload(fingerprint=f"{i:016x}")


def week_one(sim: KubeSim) -> bool:
    for name, want in ((STABLE, 4), (CANARY, 1)):
        d = sim.get("deployments", NS, name) or {}
        st = d.get("status") or {}
        if (d.get("spec", {}).get("replicas") != want or st.get("availableReplicas", 0) != want
                or st.get("replicas") != want or st.get("observedGeneration") != d["metadata"].get("generation")):
            return False
    return not any(p["metadata"].get("deletionTimestamp") for p in sim.list("pods", NS))


async def reset(sim: KubeSim, rx: RunningReceiver, delete_lease: bool) -> None:
    """Week 1 again (with no Lease if asked), and the receiver's watches have seen it."""
    cfg = rx.store.config
    target = cfg.target(TARGET)
    assert target is not None
    lease_ns = lease_namespace(cfg, target)
    if delete_lease and sim.get("leases", lease_ns, lease_name(target)) is not None:
        sim.registry.delete(LEASES, lease_ns, lease_name(target))
    sim.scale_as(NS, CANARY, 1, field_manager="bench")
    sim.scale_as(NS, STABLE, 4, field_manager="bench")
    await sim.wait_for(lambda: week_one(sim), 30)
    deadline = time.monotonic() + 10
    while True:  # a benchmark may poll: the receiver's watch is not a store change
        st = rx.watcher.states()[TARGET]
        if (st.canary_replicas, st.stable_replicas, st.rollback_running) == (1, 4, None) and (
            not delete_lease or not st.recent_rollbacks
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the receiver never saw week 1 again: {st}")
        await asyncio.sleep(0.005)


async def rollback_done() -> None:
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("rollback ") and not t.done()]
    if tasks:
        await asyncio.wait(tasks, timeout=30)


def ms(values: list[float]) -> str:
    q = statistics.quantiles(values, n=10) if len(values) > 1 else values
    return (f"median {statistics.median(values) * 1000:.1f} ms, p90 {q[-1] * 1000:.1f} ms, "
            f"min {min(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms (n={len(values)})")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--ready-delay", type=float, default=0.02)
    p.add_argument("--requests", action="store_true", help="print the API requests of the median round")
    p.add_argument("--lease", choices=("delete", "keep"), default="delete",
                   help="between rounds delete the Lease (the target's first rollback: no Lease yet) or keep "
                        "it, released (every later rollback)")
    args = p.parse_args()
    configure(json=True, level="error")
    sim = KubeSim(ready_delay=args.ready_delay, termination_grace=0.02)
    sim.load_manifests(KubeSim.default_manifests())
    await sim.start()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
        cfg["slack"]["mode"] = "off"
        cfg["settings"]["max_rollbacks_per_hour"] = 10_000  # belt and braces: Leases are deleted anyway
        config_path = tmp / "config.yaml"
        config_path.write_text(yaml.safe_dump(cfg))
        token = secrets.token_urlsafe(16)
        rx = await start_receiver(config_path, "127.0.0.1:0", kubeconfig=sim.write_kubeconfig(tmp / "kubeconfig"),
                                  identity="bench", env={"RECEIVER_WEBHOOK_TOKEN": token}, watch_config=False)
        await rx.watcher.wait_synced(10)
        took: list[float] = []
        rounds: list[tuple[float, list[tuple[float, str]]]] = []
        try:
            async with aiohttp.ClientSession() as http:
                for i in range(args.rounds + 1):
                    await reset(sim, rx, args.lease == "delete")
                    seen = len(sim.requests)
                    t0 = time.monotonic()
                    async with http.post(f"{rx.url}/webhook", json=payload(i),
                                         headers={"Authorization": f"Bearer {token}"}) as resp:
                        status = resp.status
                        await resp.read()
                    await sim.wait_for(lambda s=seen: any(
                        r.method == "PATCH" and r.path.endswith(f"/{CANARY}/scale") for r in sim.requests[s:]), 10)
                    reqs = sim.requests[seen:]
                    patch = next(r for r in reqs if r.method == "PATCH" and r.path.endswith(f"/{CANARY}/scale"))
                    await rollback_done()
                    assert status == 200, status
                    if i:
                        took.append(patch.received - t0)
                        rounds.append((patch.received - t0, [(r.received - t0, f"{r.method} {r.resource}")
                                                             for r in reqs if r.received <= patch.received]))
        finally:
            await rx.stop(grace=1)
            await sim.stop()
    lease = "deleted" if args.lease == "delete" else "kept"
    print(f"webhook POST -> first scale PATCH received (canary), Lease {lease} between rounds: "
          f"{ms(took)}   (target: median < 10 ms; receiver and simulator in one process)")
    kinds = Counter(k for _, reqs in rounds for _, k in reqs)
    print("  API requests before it, per round: "
          + ", ".join(f"{k} x{n / len(rounds):.1f}" for k, n in kinds.most_common()))
    if args.requests:
        _, reqs = sorted(rounds)[len(rounds) // 2]
        for t, k in reqs:
            print(f"  +{t * 1000:6.2f} ms  {k}")


if __name__ == "__main__":
    asyncio.run(main())
