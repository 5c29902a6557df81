"""What `receiver serve` starts it stops, and what it counts it serves at its own /metrics.

Run as `receiver serve` builds them (start_receiver), against the simulator over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import receiver
from receiver.cli.serve import CannotListen, RunningReceiver, start_receiver
from receiver.domain.settings import load_config
from sim.kube import KubeSim
from tests.fixtures.receiver import firing_payload

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = Path(receiver.__file__).resolve().parent
TOKEN, ADMIN = "s3cret-webhook-token", "s3cret-admin-token"
ENV = {"RECEIVER_WEBHOOK_TOKEN": TOKEN, "RECEIVER_ADMIN_TOKEN": ADMIN}

pytestmark = pytest.mark.timeout(60)


def config(tmp_path: Path) -> Path:
    cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
    cfg["slack"]["mode"] = "off"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


async def scrape(rx: RunningReceiver, name: str, **labels: str) -> float | None:
    async with aiohttp.ClientSession() as http, http.get(f"{rx.url}/metrics") as resp:
        text = await resp.text()
    return next((s.value for f in text_string_to_metric_families(text) for s in f.samples
                 if s.name == name and s.labels == labels), None)


def ours(before: set[asyncio.Task[object]]) -> list[str]:
    """The receiver's tasks started since ``before`` still running (not the simulator's, which
    shares the event loop)."""
    def receivers(task: asyncio.Task[object]) -> bool:
        code = getattr(task.get_coro(), "cr_code", None)
        return code is not None and Path(code.co_filename).is_relative_to(PRODUCT)

    return sorted(t.get_name() for t in asyncio.all_tasks() - before if not t.done() and receivers(t))


async def test_each_receiver_in_a_process_serves_only_its_own_counts_at_metrics(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    path = config(tmp_path)
    a = await start_receiver(path, kubeconfig=kubeconfig_path, identity="replica-a", env=ENV, watch_config=False)
    b = await start_receiver(path, kubeconfig=kubeconfig_path, identity="replica-b", env=ENV, watch_config=False)
    try:
        async with aiohttp.ClientSession() as http:
            body = json.dumps(firing_payload("0.005")).encode()  # below week 1's 1 %: nothing to roll back
            async with http.post(f"{a.url}/webhook", data=body,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200
            async with http.post(f"{a.url}/-/reload", headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
                assert resp.status == 200
        # the handlers, the intake and the config store of one receiver all count into what it serves
        for rx, expected in ((a, 1), (b, 0)):
            assert await scrape(rx, "receiver_webhooks_total", outcome="accepted") == expected
            assert await scrape(rx, "receiver_alerts_total", decision="no_rule_matched",
                                reason="below_threshold") == (expected or None)
            assert await scrape(rx, "receiver_config_reloads_total", result="success") == expected
        assert a.metrics is not b.metrics
    finally:
        await a.stop(grace=0)
        await b.stop(grace=0)


async def test_a_stopped_receiver_leaves_no_task_running_and_frees_its_port(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    before = asyncio.all_tasks()
    rx = await start_receiver(config(tmp_path), kubeconfig=kubeconfig_path, env=ENV)
    assert {"cluster-link", "adopt-orphans", "config-watch"} <= set(ours(before))  # and the watches
    port = int(rx.url.rsplit(":", 1)[1])
    await rx.stop(grace=1)
    assert ours(before) == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the listener is closed
    await rx.stop(grace=1)  # a second stop is harmless


async def test_a_receiver_that_cannot_listen_leaves_no_task_running(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    before = asyncio.all_tasks()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CannotListen, match="address already in use"):
            await start_receiver(config(tmp_path), f"127.0.0.1:{port}", kubeconfig=kubeconfig_path, env=ENV)
    assert ours(before) == []
