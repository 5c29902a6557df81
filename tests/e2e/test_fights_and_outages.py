"""The receiver as `receiver serve` builds it, against the simulator and the fake Slack.

Alertmanager's deliveries are posted directly here (the chain with the real one is in
test_chain.py), so these tests can shape the cluster and Slack between deliveries.
"""

from __future__ import annotations

import asyncio
import html
import secrets
from collections.abc import AsyncIterator, Callable
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
from tests.fixtures.receiver import firing_payload

ROOT = Path(__file__).resolve().parents[2]
NS, STABLE, CANARY = "finance", "finance-service-v1", "finance-service-v2"
CHANNEL = "#rollbacks"

pytestmark = pytest.mark.timeout(60)


@dataclass
class Setup:
    sim: KubeSim
    slack: FakeSlack
    rx: RunningReceiver
    token: str

    async def deliver(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.rx.url}/webhook",
                json=payload or firing_payload(),
                headers={"Authorization": f"Bearer {self.token}"},
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())

    def text(self) -> str:
        """The channel, threads included, as people read it."""
        out = []
        for m in self.slack.messages(CHANNEL):
            out.append(m.text)
            out.extend(r.text for r in self.slack.thread(CHANNEL, m.ts)[1:])
        return html.unescape("\n".join(out))

    def spec(self, name: str) -> int:
        return int(((self.sim.get("deployments", NS, name) or {}).get("spec") or {}).get("replicas", 0))

    def ready(self, name: str) -> int:
        return int(((self.sim.get("deployments", NS, name) or {}).get("status") or {}).get("readyReplicas", 0))


@pytest.fixture
async def setup(kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[tuple[RunningReceiver, FakeSlack]] = []

    async def make(slack: FakeSlack | None = None, **settings: Any) -> Setup:
        if slack is None:
            slack = FakeSlack(channels={CHANNEL: "C0ROLLBACKS"})
            await slack.start()
        cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
        cfg["settings"].update(settings)
        cfg["slack"].update(mode="bot", api_url=slack.api_url, oncall_mention="<!here>")
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        token = secrets.token_urlsafe(12)
        env = {"RECEIVER_WEBHOOK_TOKEN": token, "SLACK_BOT_TOKEN": slack.token}
        rx = await start_receiver(path, kubeconfig=kubeconfig_path, identity="rx", env=env, watch_config=False)
        await rx.watcher.wait_synced(5)
        started.append((rx, slack))
        return Setup(kube_sim, slack, rx, token)

    yield make
    for rx, slack in started:
        await rx.stop(grace=1)
        await slack.stop()  # idempotent: a shared fake Slack is stopped once


async def rolled_back(s: Setup) -> None:
    """The rollback is verified and its Lease released (as the receiver's watch sees it)."""
    await s.sim.wait_for(lambda: s.spec(CANARY) == 0 and s.ready(STABLE) == 5, timeout=10)
    await s.rx.watcher.wait_for(lambda: s.rx.watcher.states()["finance-service"].rollback_running is None, 10)
    async with asyncio.timeout(10):  # the record says finished a moment before the run lets its Lease go
        await s.rx.executor.wait_idle()


async def gitops_reverts(s: Setup) -> None:
    """What Argo CD does when the repository still says week 1."""
    s.sim.scale_as(NS, CANARY, 1, field_manager="argocd-controller")
    s.sim.scale_as(NS, STABLE, 4, field_manager="argocd-controller")
    await s.sim.wait_for(lambda: s.ready(CANARY) == 1 and s.spec(STABLE) == 4, timeout=10)
    await s.rx.watcher.wait_for(lambda: s.rx.watcher.states()["finance-service"].canary_replicas == 1, 10)


async def test_a_gitops_controller_fighting_the_rollback_is_named_and_after_the_limit_the_receiver_stops(
    setup: Callable[..., Any],
) -> None:
    s: Setup = await setup(max_rollbacks_per_hour=2)
    assert (await s.deliver())["decisions"][0]["decision"] == "roll_back"
    await rolled_back(s)
    await gitops_reverts(s)
    assert (await s.deliver())["decisions"][0]["decision"] == "roll_back"
    await rolled_back(s)
    await s.slack.wait_for(lambda: "argocd-controller" in s.text(), timeout=10)
    await gitops_reverts(s)
    patches_before = len([r for r in s.sim.requests if r.method == "PATCH"])
    answer = await s.deliver()
    assert answer["decisions"][0]["decision"] == "halted", answer
    await s.slack.wait_for(lambda: "Not rolling back" in s.text(), timeout=10)
    halted = [m for m in s.slack.messages(CHANNEL) if "Not rolling back" in m.text]
    assert halted and halted[0].text.startswith("<!here>")  # loud: a new message with the mention
    assert s.spec(CANARY) == 1  # the receiver stopped fighting
    assert len([r for r in s.sim.requests if r.method == "PATCH"]) == patches_before


async def test_a_slack_outage_does_not_slow_the_rollback_and_the_thread_arrives_when_slack_is_back(
    setup: Callable[..., Any],
) -> None:
    s: Setup = await setup()
    await s.slack.stop()  # Slack is down from before the alert
    assert (await s.deliver())["decisions"][0]["decision"] == "roll_back"
    await rolled_back(s)  # verified while Slack is still down: nothing waited on it
    records = await s.rx.executor.list_rollbacks()
    assert records[0].phase.value == "succeeded"
    assert s.slack.messages(CHANNEL) == []
    await s.slack.start()  # same port: Slack is back
    await s.slack.wait_for(lambda: "rolled back in" in s.text() and "verify" in s.text(), timeout=30)
    assert len(s.slack.messages(CHANNEL)) == 1  # one parent, no duplicate after the retries


async def test_an_alert_resolving_after_a_restart_is_still_told_in_the_rollbacks_thread(
    setup: Callable[..., Any],
) -> None:
    first: Setup = await setup()
    await first.deliver()
    await rolled_back(first)
    await first.slack.wait_for(lambda: "rolled back in" in first.text(), timeout=10)
    await first.rx.stop(grace=1)  # the receiver restarts between the rollback and the resolve
    second: Setup = await setup(slack=first.slack)
    resolved = firing_payload(status="resolved")
    assert (await second.deliver(resolved))["decisions"][0]["decision"] == "resolved"
    parent = first.slack.messages(CHANNEL)[0]
    await first.slack.wait_for(
        lambda: "resolved" in html.unescape(" ".join(m.text for m in first.slack.thread(CHANNEL, parent.ts))),
        timeout=10,
    )
    assert len(first.slack.messages(CHANNEL)) == 1  # in the thread, not a new message
