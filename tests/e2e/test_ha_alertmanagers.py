"""Two real Alertmanagers delivering the same alert (HA duplicates) lead to one rollback.

Each Debian Alertmanager runs the shipped route with bearer credentials from a file and
is not clustered, so both really send: the worst case of an HA pair whose gossip lagged.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import yaml

from receiver.cli.serve import start_receiver
from receiver.domain.settings import load_config
from sim.kube import KubeSim
from tests.e2e.prom import alertmanager_config, running_alertmanager

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
NS, STABLE, CANARY = "finance", "finance-service-v1", "finance-service-v2"


async def test_the_same_alert_from_two_alertmanagers_rolls_back_once(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
    cfg["slack"]["mode"] = "off"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    token = secrets.token_urlsafe(16)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    rx = await start_receiver(
        path, kubeconfig=kubeconfig_path, identity="rx", env={"RECEIVER_WEBHOOK_TOKEN": token}, watch_config=False
    )
    alert = [
        {
            "labels": {
                "alertname": "HighErrorRate",
                "service": "finance-service",
                "severity": "critical",
                "rollback": "immediate",  # the label the shipped route selects
                "version": "v2",
            },
            "annotations": {"value": "0.072", "summary": "error rate 7.2 %"},
            "startsAt": datetime.now(UTC).isoformat(),
        }
    ]
    try:
        am_config = alertmanager_config(f"{rx.url}/webhook", token_file)
        async with (
            running_alertmanager(am_config, tmp_path / "am-1") as am1,
            running_alertmanager(am_config, tmp_path / "am-2") as am2,
            aiohttp.ClientSession() as http,
        ):
            async with http.get(f"{rx.url}/metrics") as resp:
                before = await resp.text()  # the registry is per process: compare, do not count
            for am in (am1, am2):  # Prometheus sends every alert to every Alertmanager
                async with http.post(f"{am.url}/api/v2/alerts", json=alert) as resp:
                    assert resp.status == 200
            for am in (am1, am2):
                await _delivered(http, am.url)
            # Alertmanager counts a notification as it sends it: wait for both answers
            async with asyncio.timeout(10):
                while True:
                    async with http.get(f"{rx.url}/metrics") as resp:
                        metrics = await resp.text()
                    if _sample(metrics, ACCEPTED) - _sample(before, ACCEPTED) >= 2:
                        break
                    await asyncio.sleep(0.05)
            await kube_sim.wait_for(
                lambda: (kube_sim.get("deployments", NS, STABLE) or {}).get("status", {}).get("readyReplicas") == 5,
                timeout=30,
            )
    finally:
        await rx.stop(grace=2)
    scale = [r for r in kube_sim.requests if r.method == "PATCH" and r.path.endswith("/scale")]
    assert sorted(r.path.rsplit("/", 2)[-2] for r in scale) == [STABLE, CANARY]
    accepted = ACCEPTED
    rolled = 'receiver_decisions_total{decision="roll_back",target="finance-service"}'
    assert _sample(metrics, accepted) - _sample(before, accepted) >= 2  # both delivered (and may re-send)
    assert _sample(metrics, rolled) - _sample(before, rolled) == 1


ACCEPTED = 'receiver_webhooks_total{outcome="accepted"}'


async def _delivered(http: aiohttp.ClientSession, am_url: str) -> None:
    """Poll an Alertmanager's own metrics (an external process offers no event) until its
    webhook notification succeeded, i.e. the receiver answered 2xx."""
    async with asyncio.timeout(30):
        while True:
            async with http.get(f"{am_url}/metrics") as resp:
                text = await resp.text()
            sent = _sample(text, 'alertmanager_notifications_total{integration="webhook"}')
            failed = _sample(text, 'alertmanager_notifications_failed_total{integration="webhook"}')
            assert failed == 0, text
            if sent >= 1:
                return
            await asyncio.sleep(0.1)


def _sample(metrics: str, series: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
