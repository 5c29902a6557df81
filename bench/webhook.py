"""Webhook throughput, latency and memory, against a bare aiohttp baseline in the same run.

Prints figures; asserts nothing (these machines are shared and noisy, so the figure that
matters is the ratio to the baseline measured minutes apart on the same machine).

    python bench/webhook.py [--seconds 5]

Needs wrk and hey (Debian packages `wrk`, `hey`): wrk for closed-loop throughput, hey
for latency at a fixed rate. Measures, for a typical 3-alert payload that decides
"already rolled back" (the common case when Alertmanager re-sends):
  1. throughput of the receiver vs a bare aiohttp handler that only returns 200 (goal >= 0.6);
  2. p99 latency at half the receiver's throughput (goal < 10 ms);
  3. idle RSS (goal < 80 MB) and RSS growth over 100,000 webhooks (goal < 10 MB).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from decide import body  # noqa: E402  (bench/ is sys.path[0] when run as a script)

TOKEN = "bench-token"

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

RECEIVER = """
import sys
from pathlib import Path
from aiohttp import web
from receiver.config.store import ConfigStore
from receiver.domain.decisions import TargetState
from receiver.intake.deliveries import Service
from receiver.http.app import Runtime, make_app
import structlog, logging
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

class States:
    def states(self):
        back = TargetState(canary_replicas=0, stable_replicas=5, stable_ready=5, stable_exists=True)
        return {"finance-service": back}

class NoExecutor:
    async def claim(self, decision, target):
        raise AssertionError("already rolled back: nothing to claim")
    def start(self, record):
        raise AssertionError

class NoNotifier:
    def decision(self, decision, target, record=None):
        pass

async def none():
    return []

async def ok():
    return None

store = ConfigStore(Path(sys.argv[2]), env={"RECEIVER_WEBHOOK_TOKEN": sys.argv[3]})
service = Service(lambda: store.config, States(), NoExecutor(), NoNotifier(), metrics=store.metrics)
app = make_app(Runtime(store=store, service=service, list_rollbacks=none, kube_check=ok))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def payload() -> bytes:
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
                "fingerprint": f"55700370c855a6a{i}",
            }
        )
    return body(alerts)  # the same Alertmanager envelope as bench/decide.py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(code: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), *args], cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # an external process: a bounded wait for its port
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def wrk(port: int, body_file: Path, seconds: int, connections: int = 32, distinct: bool = False) -> float:
    """Closed-loop throughput. distinct=True gives every request a new fingerprint, so no
    request can reuse an earlier decision (the worst case: validate and decide each time)."""
    lua = body_file.with_suffix(".distinct.lua" if distinct else ".lua")
    vary = """
        local counter = 0
        request = function()
            counter = counter + 1
            local body = string.gsub(wrk.body, "55700370c855a6a", string.format("%015x", counter))
            return wrk.format(nil, nil, nil, body)
        end
    """
    lua.write_text(
        textwrap.dedent(f"""
        wrk.method = "POST"
        wrk.headers["Content-Type"] = "application/json"
        wrk.headers["Authorization"] = "Bearer {TOKEN}"
        local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()
    """)
        + (textwrap.dedent(vary) if distinct else "")
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), f"http://127.0.0.1:{port}/webhook"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} non-2xx answers:\n{out}")
    return float(m.group(1)) if m else 0.0


def paced_p99(port: int, body_file: Path, rate: float, seconds: int) -> tuple[float, float]:
    """Open-loop-ish load at a fixed total rate with hey (-q per worker); (p50, p99) in ms."""
    workers = 16
    out = subprocess.run(
        [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            str(workers),
            "-q",
            str(max(1, int(rate / workers))),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "-D",
            str(body_file),
            f"http://127.0.0.1:{port}/webhook",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    codes = set(re.findall(r"\[(\d{3})\]\s+\d+ responses", out))
    if codes != {"200"} or "Error distribution" in out:
        raise RuntimeError(f"non-200 answers:\n{out}")
    pct = dict(re.findall(r"(\d+)% in ([\d.]+) secs", out))
    return float(pct["50"]) * 1000, float(pct["99"]) * 1000


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory-requests", type=int, default=100_000)
    args = ap.parse_args()
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool}: apt-get install -y {tool}")
    tmp = Path(tempfile.mkdtemp())
    body_file = tmp / "payload.json"
    body_file.write_bytes(payload())
    config = tmp / "config.yaml"
    config.write_text((ROOT / "config.yaml").read_text())

    bare, bare_port = start(BARE)
    rx, rx_port = start(RECEIVER, str(config), TOKEN)
    try:
        time.sleep(1)
        idle = rss_mb(rx.pid)
        wrk(bare_port, body_file, 1)  # warm-up both
        wrk(rx_port, body_file, 1)
        # Interleaved rounds, median of each: the machine's noise hits both alike.
        bare_runs, rx_runs = [], []
        for _ in range(args.rounds):
            bare_runs.append(wrk(bare_port, body_file, args.seconds))
            rx_runs.append(wrk(rx_port, body_file, args.seconds))
        bare_rps, rx_rps = statistics.median(bare_runs), statistics.median(rx_runs)
        bare_new = wrk(bare_port, body_file, args.seconds, distinct=True)
        rx_new = wrk(rx_port, body_file, args.seconds, distinct=True)
        p50, p99 = paced_p99(rx_port, body_file, rx_rps / 2, args.seconds)
        before = rss_mb(rx.pid)
        secs = max(1, int(args.memory_requests / max(rx_rps, 1)) + 1)
        wrk(rx_port, body_file, secs)
        after = rss_mb(rx.pid)
    finally:
        for proc in (bare, rx):
            proc.terminate()
            proc.wait()
    sent = int(rx_rps * secs)
    print(f"bare aiohttp handler : {bare_rps:9.0f} req/s (median of {args.rounds} interleaved rounds)")
    print(f"receiver (3 alerts)  : {rx_rps:9.0f} req/s   ratio {rx_rps / bare_rps:.2f} (goal >= 0.60; re-sent bodies)")
    print(f"every body new       : {rx_new:9.0f} req/s   ratio {rx_new / bare_new:.2f} "
          f"(bare {bare_new:.0f}; validated and decided each time)")
    print(f"at {rx_rps / 2:.0f} req/s       : p50 {p50:.2f} ms, p99 {p99:.2f} ms (goal p99 < 10 ms)")
    print(f"idle RSS             : {idle:.1f} MB (goal < 80 MB)")
    print(
        f"RSS over ~{sent:,} webhooks: {before:.1f} -> {after:.1f} MB, growth {after - before:+.1f} MB (goal < 10 MB)"
    )


if __name__ == "__main__":
    main()
