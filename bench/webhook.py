"""Webhook throughput and idle memory of the REAL `receiver serve`, against a bare aiohttp
handler measured in the same run.

    python bench/webhook.py [--seconds 5] [--requests 20000] [--rounds 3]

Nothing is faked: `receiver sim --slack-port 0` (the Kubernetes API simulator seeded with
week 1, and the fake Slack) runs as one process, and `receiver serve` as another, with its
production defaults: JSON logs at info (to a file, as a log shipper would read them), Slack
in bot mode against the fake Slack, its watches and Lease on the simulator over loopback.
The first webhook rolls finance-service back for real; every later one decides "already
rolled back" (the common case when Alertmanager re-sends). Then, each as a ratio to the bare
handler (which reads the body and answers 200) in interleaved rounds:
  1. every body new (each request a new fingerprint: validated and decided each time);
  2. byte-identical re-sends (the same body: the repeat cache's case).
The load is an aiohttp client loop on loopback in this process, bounded by --requests and
--seconds per round, with --connections requests in flight. The client costs CPU on the same
cores as the server, for the bare handler as for the receiver, so read the ratio, not the
absolute figure. Also: the idle RSS of the serve process once connected (goal <= 80 MB).
Prints figures, asserts nothing (shared, noisy machines).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from decide import body  # noqa: E402  (bench/ is on sys.path)

TOKEN = "bench-token"
FINGERPRINT = "55700370c855a6a"  # + one hex digit per alert

BARE = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.Response(text="ok")
app = web.Application()
app.router.add_post("/webhook", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def payload() -> bytes:
    """A typical 3-alert Alertmanager delivery for finance-service's canary."""
    alerts = []
    for i, name in enumerate(("HighErrorRate", "HighLatencyP95", "HighCPUUsage")):
        alerts.append(
            {
                "status": "firing",
                "labels": {"alertname": name, "service": "finance-service", "severity": "critical", "version": "v2"},
                "annotations": {"summary": f"{name} on finance-service", "value": "0.072"},
                "startsAt": "2026-11-27T00:15:37.241232707Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": f"{FINGERPRINT}{i}",
            }
        )
    return body(alerts)  # the same Alertmanager envelope as bench/decide.py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def receiver_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "receiver", *args]


def start_sim(tmp: Path) -> tuple[subprocess.Popen[str], Path, str, str]:
    """`receiver sim` with the fake Slack; (process, kubeconfig, slack api_url, slack token)."""
    kubeconfig = tmp / "kubeconfig"
    proc = subprocess.Popen(
        receiver_cmd("sim", "--kubeconfig", str(kubeconfig), "--ready-delay", "0.2", "--slack-port", "0"),
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # it prints its addresses, then "Press Ctrl+C to stop."
        m = re.search(r"api_url: (\S+?)\}\s+and SLACK_BOT_TOKEN=(\S+)", line)
        if m:
            return proc, kubeconfig, m.group(1), m.group(2)
    proc.kill()
    raise RuntimeError("receiver sim did not start")


def wait_port(proc: subprocess.Popen[bytes] | subprocess.Popen[str], port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # an external process: a bounded wait for its port
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


async def load(port: int, make_body: Callable[[int], bytes], requests: int, seconds: float,
               connections: int) -> tuple[float, int]:
    """Closed loop: `connections` requests in flight until `requests` are answered or
    `seconds` have passed; (answers per second, answers). Every answer must be 200."""
    url = f"http://127.0.0.1:{port}/webhook"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    counter = 0
    done = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as http:

        async def worker() -> None:
            nonlocal counter, done
            while counter < requests and time.monotonic() < deadline:
                counter += 1
                async with http.post(url, data=make_body(counter), headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"answer {r.status}: {await r.text()}")
                done += 1

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return done / (time.monotonic() - began), done


async def rolled_back(port: int, body_bytes: bytes, seconds: float = 60) -> None:
    """Send the alert until the receiver answers that nothing is left to do (the rollback it
    started on the first delivery has finished)."""
    url = f"http://127.0.0.1:{port}/webhook"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.post(url, data=body_bytes, headers=headers) as r:
                answer = await r.json()
            if r.status == 200 and "already_rolled_back" in str(answer):
                return
            await asyncio.sleep(0.2)  # an external process's rollback: bounded polling
    raise RuntimeError(f"the rollback did not finish in {seconds} s: {answer}")


async def bench(args: argparse.Namespace, bare_port: int, rx_port: int) -> dict[str, list[float]]:
    template = payload()
    distinct_base = 0

    def same(_i: int) -> bytes:
        return template

    def distinct(i: int) -> bytes:
        return template.replace(FINGERPRINT.encode(), f"{distinct_base + i:015x}".encode())

    await rolled_back(rx_port, template)
    for port in (bare_port, rx_port):  # warm-up: connections, caches, first-call imports
        await load(port, same, 500, 2, args.connections)
    runs: dict[str, list[float]] = {k: [] for k in ("bare_new", "rx_new", "bare_same", "rx_same")}
    for _ in range(args.rounds):  # interleaved: the machine's noise hits both alike
        for kind, make in (("new", distinct), ("same", same)):
            for who, port in (("bare", bare_port), ("rx", rx_port)):
                rate, _n = await load(port, make, args.requests, args.seconds, args.connections)
                runs[f"{who}_{kind}"].append(rate)
                distinct_base += args.requests + 1  # fingerprints never repeat across runs
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5, help="upper bound of one measured run")
    ap.add_argument("--requests", type=int, default=20_000, help="upper bound of requests in one run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    procs: list[subprocess.Popen[str] | subprocess.Popen[bytes]] = []
    try:
        sim, kubeconfig, slack_url, slack_token = start_sim(tmp)
        procs.append(sim)
        config = yaml.safe_load((ROOT / "config.yaml").read_text())
        config["slack"].update(mode="bot", api_url=slack_url)
        (tmp / "config.yaml").write_text(yaml.safe_dump(config))
        rx_port, bare_port = free_port(), free_port()
        env = {**os.environ, "RECEIVER_WEBHOOK_TOKEN": TOKEN, "SLACK_BOT_TOKEN": slack_token}
        log = tmp / "receiver.log"
        with log.open("w") as log_file:
            rx = subprocess.Popen(
                receiver_cmd("serve", "--config", str(tmp / "config.yaml"), "--kubeconfig", str(kubeconfig),
                             "--listen", f"127.0.0.1:{rx_port}", "--log-format", "json", "--log-level", "info"),
                cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            )
        procs.append(rx)
        bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)], cwd=tmp)
        procs.append(bare)
        wait_port(rx, rx_port)
        wait_port(bare, bare_port)
        time.sleep(2)  # idle: its watches listed, the Slack bot ready (nothing to wait on from outside)
        idle = rss_mb(rx.pid)
        runs = asyncio.run(bench(args, bare_port, rx_port))
        after = rss_mb(rx.pid)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(10)
    med = {k: statistics.median(v) for k, v in runs.items()}
    lines = sum(1 for _ in log.open())
    print(f"real `receiver serve` (JSON logs at info, bot mode) on `receiver sim`; "
          f"{args.connections} in flight, median of {args.rounds} interleaved rounds")
    print(f"every body new   : receiver {med['rx_new']:7.0f} req/s, bare {med['bare_new']:7.0f} req/s, "
          f"ratio {med['rx_new'] / med['bare_new']:.2f} (validated and decided each time)")
    print(f"byte-identical   : receiver {med['rx_same']:7.0f} req/s, bare {med['bare_same']:7.0f} req/s, "
          f"ratio {med['rx_same'] / med['bare_same']:.2f} (re-sent bodies)")
    print(f"idle RSS of serve: {idle:.1f} MB (goal <= 80 MB); after the load {after:.1f} MB")
    print(f"log lines written: {lines} ({log})")


if __name__ == "__main__":
    main()
