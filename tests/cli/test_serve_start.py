"""`receiver serve` starts listening at once, and refuses to start in one line (exit 2)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from receiver.cli.serve import ClusterLink
from receiver.kube import new_api_client
from sim.kube import KubeSim
from tests.cli.helpers import config_file, free_port, kubeconfig_for, receiver

TOKEN = "s3cret-webhook-token"


def serve_env() -> dict[str, str]:
    return {"RECEIVER_WEBHOOK_TOKEN": TOKEN}


async def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", f"https://127.0.0.1:{free_port()}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = await receiver("serve", "--config", str(config_file(tmp_path)), "--kubeconfig", str(kubeconfig),
                           "--listen", f"127.0.0.1:{port}", "--log-format", "json", env=serve_env())
    assert r.code == 2
    [line] = r.err.strip().splitlines()
    assert json.loads(line)["error"] == f"cannot listen on 127.0.0.1:{port}: address already in use"
    assert "Unclosed" not in r.err and "Traceback" not in r.err


async def test_a_bad_log_level_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = await receiver("serve", "--config", str(config_file(tmp_path)), "--log-level", "loud")
    assert r.code == 2
    [line] = r.err.strip().splitlines()
    assert "--log-level: invalid choice: 'loud'" in line


class Served:
    """A `receiver serve` process and what it logged."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url
        self.lines: list[dict[str, object]] = []

    async def read_logs(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(json.loads(raw))


@pytest.fixture
async def serve_unreachable(tmp_path: Path) -> AsyncIterator[tuple[Served, int]]:
    """`receiver serve` whose cluster (a loopback port) is not there yet."""
    port = free_port()
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "serve", "--config", str(config_file(tmp_path)),
        "--kubeconfig", str(kubeconfig), "--listen", "127.0.0.1:0", "--log-format", "json",
        env={**os.environ, **serve_env()}, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    async with asyncio.timeout(20):
        first = json.loads(await proc.stderr.readline())
    assert first["msg"] == "receiver_listening", first
    served = Served(proc, str(first["url"]))
    reader = asyncio.create_task(served.read_logs())
    try:
        yield served, port
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await reader


async def test_serve_listens_at_once_while_the_cluster_is_unreachable_and_says_why_not_ready(
    serve_unreachable: tuple[Served, int],
) -> None:
    served, port = serve_unreachable
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{served.url}/health/live") as resp:
            assert resp.status == 200
        async with http.get(f"{served.url}/health/ready") as resp:
            assert resp.status == 503
            body = await resp.json()
        assert f"127.0.0.1:{port} unreachable: connection refused" in body["checks"]["kubernetes"]
        async with http.post(f"{served.url}/webhook", json={}, headers=auth) as resp:
            assert resp.status == 503  # Alertmanager retries it once the cluster is back
            assert "waiting for the cluster" in (await resp.json())["error"]


async def test_serve_becomes_ready_once_the_cluster_answers(
    serve_unreachable: tuple[Served, int],
) -> None:
    served, port = serve_unreachable
    sim = KubeSim(ready_delay=0.02, termination_grace=0.02)
    sim.load_manifests(KubeSim.default_manifests())
    await sim.start("127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            while True:  # the receiver re-checks on its own backoff; poll its public answer
                async with http.get(f"{served.url}/health/ready") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.2)
    finally:
        await sim.stop()


async def test_an_outage_is_logged_at_warning_once_not_per_retry_and_the_recovery_once(
    tmp_path: Path,
) -> None:
    port = free_port()
    api = await new_api_client(kubeconfig_for(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}"))
    sim = KubeSim()
    try:
        link = ClusterLink(api, warn_every=3600)
        with capture_logs() as logs:
            for _ in range(5):
                assert "connection refused" in (await link.check() or "")
            await sim.start("127.0.0.1", port)
            for _ in range(3):
                assert await link.check() is None
        events = [(e["log_level"], e["event"]) for e in logs]
        assert events == [("warning", "kube_unreachable"), ("info", "kube_reachable")]
    finally:
        await sim.stop()
        await api.close()
