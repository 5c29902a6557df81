"""The whole chain with real parts: fake pods -> Prometheus -> Alertmanager -> receiver -> cluster, Slack.

Debian's Prometheus scrapes two fake finance-service pods and evaluates the shipped
rules (only their timings shortened); Debian's Alertmanager routes with the shipped
snippet and bearer credentials from a file; the receiver runs exactly as `receiver serve`
builds it, against the Kubernetes simulator and the fake Slack over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from receiver.cli.serve import RunningReceiver, start_receiver
from receiver.domain.settings import load_config
from sim.kube import KubeSim
from sim.slack import FakeSlack
from tests.e2e.fake_service import FakeServiceHandle, start_fake_service
from tests.e2e.prom import Prometheus, alertmanager_config, running_alertmanager, running_prometheus
from tests.e2e.rules_fast import RULES, fast_rules

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[2]
NS, STABLE, CANARY = "finance", "finance-service-v1", "finance-service-v2"
CHANNEL, CHANNEL_ID = "#rollbacks", "C0ROLLBACKS"
ADMIN = "e2e-admin-token"


def spec_replicas(sim: KubeSim, name: str) -> int:
    return int(((sim.get("deployments", NS, name) or {}).get("spec") or {}).get("replicas", 0))


def ready(sim: KubeSim, name: str) -> int:
    return int(((sim.get("deployments", NS, name) or {}).get("status") or {}).get("readyReplicas", 0))


@dataclass
class Chain:
    sim: KubeSim
    slack: FakeSlack
    rx: RunningReceiver
    prom: Prometheus
    v1: FakeServiceHandle
    v2: FakeServiceHandle


@contextlib.asynccontextmanager
async def chain(kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path, *, mute: bool) -> AsyncIterator[Chain]:
    slack = FakeSlack(channels={CHANNEL: CHANNEL_ID})
    await slack.start()
    cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
    cfg["slack"].update(mode="bot", api_url=slack.api_url, default_channel=CHANNEL, oncall_mention="<!here>")
    if mute:
        cfg["targets"][0]["mute"] = {"reason": "planned load test", "by": "alice"}
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    token = secrets.token_urlsafe(16)
    token_file = tmp_path / "webhook-token"
    token_file.write_text(token + "\n")
    env = {"RECEIVER_WEBHOOK_TOKEN": token, "SLACK_BOT_TOKEN": slack.token, "RECEIVER_ADMIN_TOKEN": ADMIN}
    rx = await start_receiver(cfg_path, kubeconfig=kubeconfig_path, identity="e2e", env=env)
    v1 = await start_fake_service("v1")
    v2 = await start_fake_service("v2")

    async def v2_follows_the_cluster() -> None:
        """The v2 'pod' takes traffic only while its Deployment has replicas, as a Service would route."""
        await kube_sim.wait_for(lambda: spec_replicas(kube_sim, CANARY) == 0, timeout=300)
        v2.set_serving(False)

    follower = asyncio.create_task(v2_follows_the_cluster())
    try:
        async with running_alertmanager(alertmanager_config(f"{rx.url}/webhook", token_file), tmp_path) as am:
            rules = fast_rules(RULES, tmp_path / "rules.yml")
            async with running_prometheus(
                [v1.metrics_url, v2.metrics_url], rules, tmp_path, alertmanager_url=am.url
            ) as prom:
                yield Chain(kube_sim, slack, rx, prom, v1, v2)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await follower
        await rx.stop(grace=5)
        await v1.stop()
        await v2.stop()
        await slack.stop()


def texts(msgs: list[Any]) -> str:
    """What people read: Slack shows &gt; as >."""
    return html.unescape("\n".join(m.text for m in msgs))


async def test_a_real_error_rate_alert_rolls_the_canary_back_and_the_alert_resolves(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    async with chain(kube_sim, kubeconfig_path, tmp_path, mute=False) as c:
        c.v2.set_error_ratio(0.07)
        await c.prom.wait_for_alert("HighErrorRate", labels={"version": "v2"}, timeout=40)
        await c.sim.wait_for(lambda: spec_replicas(c.sim, CANARY) == 0 and ready(c.sim, STABLE) == 5, timeout=60)
        records = await c.rx.executor.list_rollbacks()  # type: ignore[attr-defined]
        await c.slack.wait_for(lambda: "rolled back" in texts(c.slack.messages(CHANNEL)).lower(), timeout=30)
        # the cluster tells the story too: the receiver's own event on each Deployment
        ours = [e for e in c.sim.list("events", NS) if e.get("reportingComponent") == "rollback-receiver.io/receiver"]
        assert sorted((e["involvedObject"]["name"], e["reason"], e["type"]) for e in ours) == [
            (STABLE, "RolledBack", "Normal"),
            (CANARY, "RolledBack", "Normal"),
        ]
        # v2 no longer takes traffic, so the alert resolves, and the thread says so
        await c.prom.wait_for_no_alert("HighErrorRate", timeout=40)
        parent = next(m for m in c.slack.messages(CHANNEL) if not m.text.startswith("Warning for"))
        await c.slack.wait_for(lambda: "resolved" in texts(c.slack.thread(CHANNEL, parent.ts)).lower(), timeout=40)
        # the conversation as the on-call engineer reads it: one parent, final state, the steps in its thread
        # (besides a warning note, if the week-1 warning's group arrived before the rollback began)
        rollbacks = [m for m in c.slack.messages(CHANNEL) if not m.text.startswith("Warning for")]
        assert len(rollbacks) == 1
        parent = rollbacks[0]
        assert "rolled back to finance-service-v1" in parent.text and "HighErrorRate" in parent.text
        thread = texts(c.slack.thread(CHANNEL, parent.ts))
        for line in (
            "canary first",
            "finance-service-v2 scaled 1 -> 0",
            "finance-service-v1 scaled 4 -> 5",
            "successfully rolled out and all 5 pods are Ready",
            "HighErrorRate resolved",
        ):
            assert line in thread, (line, thread)
        # any replica answers GET /rollbacks from the records in the cluster
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{c.rx.url}/rollbacks", headers={"Authorization": f"Bearer {ADMIN}"}) as resp,
        ):
            listed = (await resp.json())["rollbacks"]
        assert [(r["id"], r["phase"]) for r in listed] == [(records[0].id, "succeeded")]
        assert [s["name"] for s in listed[0]["steps"]][:4] == ["preflight", "order", "scale-canary", "scale-stable"]
        assert len(records) == 1 and records[0].phase.value == "succeeded"
        assert records[0].rule == "error-rate"
        assert spec_replicas(c.sim, STABLE) == 5
        # the decision Alertmanager's delivery led to is visible in /metrics
        async with aiohttp.ClientSession() as http, http.get(f"{c.rx.url}/metrics") as resp:
            metrics = await resp.text()
        assert 'receiver_decisions_total{decision="roll_back",target="finance-service"} 1.0' in metrics
        # one rollback, however often Alertmanager re-sent the group
        scale_patches = [r for r in c.sim.requests if r.method == "PATCH" and r.path.endswith(f"/{CANARY}/scale")]
        assert len(scale_patches) == 1


async def test_with_the_target_muted_the_same_alert_changes_nothing_and_says_so(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    before = (spec_replicas(kube_sim, STABLE), spec_replicas(kube_sim, CANARY))
    async with chain(kube_sim, kubeconfig_path, tmp_path, mute=True) as c:
        c.v2.set_error_ratio(0.07)
        await c.prom.wait_for_alert("HighErrorRate", labels={"version": "v2"}, timeout=40)
        await c.slack.wait_for(lambda: "muted" in texts(c.slack.messages(CHANNEL)).lower(), timeout=30)
        muted = texts(c.slack.messages(CHANNEL))
        assert "alice" in muted and "planned load test" in muted
        assert (spec_replicas(c.sim, STABLE), spec_replicas(c.sim, CANARY)) == before == (4, 1)
        assert not [r for r in c.sim.requests if r.method in ("PATCH", "PUT") and "/deployments/" in r.path]
