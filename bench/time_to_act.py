# ruff: noqa: E402
"""Time to act: a canary starts failing -> it is scaled to 0, with the shipped rules and route.

    python bench/time_to_act.py [--cases 0.3,0.06] [--warmup 60] [--timeout 400]

Everything at production timings, nothing shortened: the fake finance-service (v1 and
v2 pods, 200 requests/s each) scraped every 15 s by Debian's Prometheus evaluating
deploy/prometheus/rules.yml as shipped; Debian's Alertmanager routing with
deploy/alertmanager/alertmanager.yml as shipped (its group_wait / group_interval; only
the webhook URL and token file point here); `receiver serve` as a subprocess with
config.yaml (Slack on the console) against the Kubernetes simulator (week 1: v1 4
pods, v2 1). Each case starts a fresh chain, lets Prometheus see healthy traffic for
--warmup seconds, then sets v2's error ratio at t0 and watches the canary Deployment
until its spec.replicas is 0. It also records when Prometheus first shows the alert
pending and firing (polled each second), and which rule (its `threshold` label) fired.

Cases: 0.3 (severe: above the fast rule's 20 %) and 0.06 (marginal: above the week-2
level of 5 % that the receiver's config.yaml acts on, below the fast rule, so the
careful 2-minute rule decides). Takes a few minutes per case; prints a table, asserts
nothing. Ports on 127.0.0.1 only; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.kube import KubeSim
from tests.e2e.fake_service import start_fake_service
from tests.e2e.prom import ALERTMANAGER_YML, alertmanager_config, running_alertmanager, running_prometheus

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
NS, CANARY = "finance", "finance-service-v2"
SCRAPE = "15s"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _canary_replicas(sim: KubeSim) -> int:
    spec = (sim.get("deployments", NS, CANARY) or {}).get("spec") or {}
    return int(spec.get("replicas", 0))


def shipped_route() -> dict[str, Any]:
    doc = yaml.safe_load(ALERTMANAGER_YML.read_text(encoding="utf-8"))
    return next(r for r in doc["route"]["routes"] if r["receiver"] == "rollback-receiver")


@dataclass
class Result:
    ratio: float
    pending: float | None = None
    firing: float | None = None
    scaled: float | None = None
    rule: str = ""
    notes: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def receiver_serve(sim: KubeSim, workdir: Path, token: str) -> AsyncIterator[str]:
    """`receiver serve` as a subprocess against the simulator; yields its base URL."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    cfg["slack"]["mode"] = "console"
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    kubeconfig = sim.write_kubeconfig(workdir / "kubeconfig")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RECEIVER_WEBHOOK_TOKEN": token}
    log = (workdir / "receiver.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "serve", "--config", str(cfg_path),
        "--kubeconfig", str(kubeconfig), "--listen", f"127.0.0.1:{port}",
        "--identity", "bench", "--log-format", "json",
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env,
    )
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{url}/health/ready") as resp:
                        if resp.status == 200:
                            break
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"receiver did not become ready; see {workdir / 'receiver.log'}")
                await asyncio.sleep(0.2)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def watch_alerts(prom_url: str, t0: float, result: Result) -> None:
    """Poll Prometheus each second: first time HighErrorRate on v2 is pending / firing."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{prom_url}/api/v1/alerts") as resp:
                    alerts = (await resp.json())["data"]["alerts"]
                now = time.monotonic() - t0
                for a in alerts:
                    lab = a["labels"]
                    if lab.get("alertname") != "HighErrorRate" or lab.get("version") != "v2":
                        continue
                    if result.pending is None:
                        result.pending = now
                    if a["state"] == "firing" and result.firing is None:
                        result.firing, result.rule = now, lab.get("threshold", "?")
            await asyncio.sleep(1)


async def one_case(ratio: float, warmup: float, deadline: float, keep: Path | None) -> Result:
    result = Result(ratio)
    route = shipped_route()
    with tempfile.TemporaryDirectory(prefix="time-to-act-") as tmp:
        workdir = keep / f"case-{ratio}" if keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        sim = KubeSim(ready_delay=0.5, termination_grace=0.5)
        sim.load_manifests(KubeSim.default_manifests())
        await sim.start()
        v1 = await start_fake_service("v1")
        v2 = await start_fake_service("v2")
        token = secrets.token_urlsafe(16)
        token_file = workdir / "webhook-token"
        token_file.write_text(token + "\n")
        watcher: asyncio.Task[None] | None = None
        try:
            async with receiver_serve(sim, workdir, token) as rx_url:
                am_cfg = alertmanager_config(
                    f"{rx_url}/webhook", token_file, group_wait=route["group_wait"],
                    group_interval=route["group_interval"], repeat_interval=route["repeat_interval"],
                )
                async with (
                    running_alertmanager(am_cfg, workdir) as am,
                    running_prometheus(
                        [v1.metrics_url, v2.metrics_url], RULES, workdir,
                        alertmanager_url=am.url, interval=SCRAPE,
                    ) as prom,
                ):
                    await asyncio.sleep(warmup)  # healthy history, as a running service has
                    v2.set_error_ratio(ratio)
                    t0 = time.monotonic()
                    watcher = asyncio.create_task(watch_alerts(prom.url, t0, result))
                    try:
                        await sim.wait_for(lambda: _canary_replicas(sim) == 0, timeout=deadline)
                        result.scaled = time.monotonic() - t0
                    except TimeoutError:
                        result.notes.append(f"not scaled to 0 within {deadline:.0f} s")
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await v1.stop()
            await v2.stop()
            await sim.stop()
    return result


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:6.1f}"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="0.3,0.06", help="v2 error ratios, comma-separated")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds of healthy traffic before t0")
    ap.add_argument("--timeout", type=float, default=400.0, help="seconds to wait for the scale to 0")
    ap.add_argument("--keep", type=Path, default=None, help="keep the processes' logs under this folder")
    args = ap.parse_args()
    route = shipped_route()
    print(f"scrape {SCRAPE}, rules {RULES.relative_to(ROOT)} as shipped, "
          f"group_wait {route['group_wait']}, group_interval {route['group_interval']}")
    results = []
    for ratio in (float(x) for x in args.cases.split(",")):
        r = await one_case(ratio, args.warmup, args.timeout, args.keep)
        results.append(r)
        print(f"  case {ratio:.0%} done: scaled to 0 after {_s(r.scaled)} s", flush=True)
    print()
    print("v2 errors | alert pending (s) | alert firing (s) | rule (threshold) | canary scaled to 0 (s)")
    print("----------|-------------------|------------------|------------------|-----------------------")
    for r in results:
        print(f"{r.ratio:9.0%} | {_s(r.pending):>17} | {_s(r.firing):>16} | {r.rule:>16} | "
              f"{_s(r.scaled):>22} {' '.join(r.notes)}")
    print("\nSeconds from t0 (v2 starts failing). pending: the first of HighErrorRate's rules on v2"
          "\n(usually the careful one); firing: the first to fire, named by its threshold label."
          "\nAlert times are polled each second from Prometheus.")


if __name__ == "__main__":
    asyncio.run(main())
