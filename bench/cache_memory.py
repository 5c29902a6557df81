"""Memory of the real `receiver serve` under many distinct quiet deliveries (issue 9).

Every cache is bounded by bytes: the re-send cache keeps serialised answers (8 MiB), the
"already told Slack" memory 16-byte digests (1 MiB). This drives `receiver serve` (JSON
logs at info, connected to `receiver sim`) with N distinct 100-alert bodies that decide
quietly (no rule matches) and prints its resident memory before and after. Before the
bound, 1,100 such bodies took the process to 283 MB (the Deployment's limit is 256 Mi).

    python bench/cache_memory.py [--bodies 1100] [--alerts 100]

Loopback only; bounded in count; prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def body(i: int, alerts: int) -> dict[str, object]:
    """A delivery for finance-service whose alerts match no rule: decided quietly."""
    return {
        "version": "4", "status": "firing", "receiver": "rollback-receiver", "groupKey": f"bench-{i}",
        "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": f"Unrelated{i}", "service": "finance-service", "version": "v2", "n": str(j)},
            "annotations": {"value": "1"}, "startsAt": "2026-12-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": f"{i:08x}{j:08x}",
        } for j in range(alerts)],
    }


async def measure(bodies: int, alerts: int, workdir: Path) -> None:
    kubeconfig = workdir / "kubeconfig"
    py = sys.executable
    sim = await asyncio.create_subprocess_exec(
        py, "-m", "receiver", "sim", "--kubeconfig", str(kubeconfig), "--port", str(free_port()),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    port = free_port()
    env = {**os.environ, "RECEIVER_WEBHOOK_TOKEN": "bench", "KUBECONFIG": str(kubeconfig)}
    with (workdir / "serve.log").open("w") as log:
        serve: asyncio.subprocess.Process | None = None
        try:
            async with asyncio.timeout(30):
                while not kubeconfig.exists():  # noqa: ASYNC110 (another process writes it)
                    await asyncio.sleep(0.05)
            serve = await asyncio.create_subprocess_exec(
                py, "-m", "receiver", "serve", "--config", str(ROOT / "config.yaml"),
                "--listen", f"127.0.0.1:{port}", env=env, stderr=log)
            url = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                async with asyncio.timeout(30):
                    while True:
                        try:
                            async with http.get(f"{url}/health/ready") as r:
                                if r.status == 200:
                                    break
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(0.05)
                idle = rss_mb(serve.pid)
                answered = 0
                for i in range(bodies):
                    async with http.post(f"{url}/webhook", json=body(i, alerts),
                                         headers={"Authorization": "Bearer bench"}) as r:
                        answered += r.status == 200
                after = rss_mb(serve.pid)
            print(f"receiver serve: idle RSS {idle:.1f} MB; after {bodies} distinct quiet {alerts}-alert "
                  f"bodies ({answered} answered 200): {after:.1f} MB (+{after - idle:.1f} MB)")
        finally:
            for proc in (serve, sim):
                if proc is not None:
                    proc.terminate()
                    await asyncio.wait_for(proc.wait(), 30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bodies", type=int, default=1100)
    p.add_argument("--alerts", type=int, default=100)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(args.bodies, args.alerts, Path(tmp)))


if __name__ == "__main__":
    main()
