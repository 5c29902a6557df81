"""Slack buttons through the real Actions door: two receivers as `receiver serve` starts them
(start_receiver) on one Kubernetes simulator, the fake Slack clicking over signed HTTP."""

from __future__ import annotations

import html
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from receiver.cli.serve import RunningReceiver, start_receiver
from receiver.domain.slack_actions import ACKNOWLEDGE, MUTE_1H, REPROMOTE
from sim.kube import KubeSim
from sim.slack import FakeSlack, Msg
from tests.fixtures.receiver import firing_payload

pytestmark = pytest.mark.timeout(90)

NS, TARGET = "finance", "finance-service"
TOKEN = "s3cret-webhook-token"
CHANNEL, CHANNEL_ID = "#rollbacks", "C0ROLLBACKS"
ALICE, BOB = "U0ALICE", "U0BOB"


def write_config(tmp_path: Path, slack: FakeSlack, prometheus: str) -> Path:
    cfg: dict[str, Any] = {
        "rules": [{"name": "error-rate", "matchers": ['alertname="HighErrorRate"'], "threshold": 0.05,
                   "unit": "ratio"}],
        "targets": [{"name": TARGET, "namespace": NS, "matchers": [f'service="{TARGET}"'],
                     "stable": f"{TARGET}-v1", "canary": f"{TARGET}-v2", "replicas": 5}],
        "slack": {"mode": "bot", "api_url": slack.api_url, "default_channel": CHANNEL,
                  "actions": {"allow": {"mute": [ALICE], "rollback": [ALICE], "promote": [ALICE],
                                        "ack": [ALICE]}}},
        "prometheus": {"url": prometheus},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@dataclass
class World:
    sim: KubeSim
    slack: FakeSlack
    prometheus: FakePrometheus
    a: RunningReceiver
    b: RunningReceiver


@dataclass
class FakePrometheus:
    """Prometheus' query API answering ``value`` to every expression (0: nothing is failing,
    so the gate's criteria pass, the stable is not sick and recovery is confirmed)."""

    url: str = ""
    value: str = "0"

    async def query(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"service": TARGET}, "value": [time.time(), self.value]}]}})


@pytest.fixture
async def prometheus() -> AsyncIterator[FakePrometheus]:
    fake = FakePrometheus()
    app = web.Application()
    app.router.add_route("*", "/api/v1/query", fake.query)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()


@pytest.fixture
async def world(kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path,
                prometheus: FakePrometheus) -> AsyncIterator[World]:
    slack = FakeSlack(channels={CHANNEL: CHANNEL_ID})
    await slack.start()
    env = {"RECEIVER_WEBHOOK_TOKEN": TOKEN, "SLACK_BOT_TOKEN": slack.token,
           "SLACK_SIGNING_SECRET": slack.signing_secret}
    config = write_config(tmp_path, slack, prometheus.url)
    made: list[RunningReceiver] = []
    try:
        for n in "ab":
            made.append(await start_receiver(config, kubeconfig=kubeconfig_path, identity=f"replica-{n}",
                                             env=env, watch_config=False))
        slack.request_url = f"{made[0].url}/slack/events"  # Slack's request URL reaches replica A
        yield World(kube_sim, slack, prometheus, made[0], made[1])
    finally:
        for rx in made:
            await rx.stop(grace=5)
        await slack.stop()


def replicas(sim: KubeSim, name: str) -> int:
    return int(((sim.get("deployments", NS, name) or {}).get("spec") or {}).get("replicas", 0))


def ours(sim: KubeSim) -> list[dict[str, Any]]:
    return [e for e in sim.list("events", NS) if e.get("reportingComponent") == "rollback-receiver.io/receiver"]


def said(slack: FakeSlack) -> list[str]:
    """Every message and thread reply in the channel, as a person reads it."""
    out = []
    for m in slack.messages(CHANNEL):
        out.append(html.unescape(m.text))
        out.extend(html.unescape(r.text) for r in m.replies)
    return out


def thread(slack: FakeSlack, parent: Msg) -> list[str]:
    return [html.unescape(m.text) for m in slack.thread(CHANNEL, parent.ts)]


async def alert(rx: RunningReceiver) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.post(
        f"{rx.url}/webhook", data=json.dumps(firing_payload(service=TARGET, fingerprint="fp-1")).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    ) as resp:
        answer = await resp.json()
        assert resp.status == 200, answer
    [decision] = answer["decisions"]
    return dict(decision)


def has_button(m: Msg, action_id: str) -> bool:
    return any(el.get("action_id") == action_id for b in m.blocks if b.get("type") == "actions"
               for el in b.get("elements") or [])


async def rolled_back(world: World) -> Msg:
    """An alert through A rolls the target back; returns the rollback's parent message."""
    assert (await alert(world.a))["decision"] == "roll_back"
    await world.a.executor.close(30)
    return await world.slack.wait_for(lambda: next(
        (m for m in world.slack.messages(CHANNEL) if has_button(m, MUTE_1H) and "rolled back" in m.text.lower()),
        None), timeout=10)


async def test_a_mute_clicked_on_a_rollback_message_through_one_replica_is_obeyed_by_the_other(
    world: World,
) -> None:
    parent = await rolled_back(world)
    before = (replicas(world.sim, f"{TARGET}-v1"), replicas(world.sim, f"{TARGET}-v2"))
    d = await world.slack.click(ALICE, CHANNEL, parent.ts, MUTE_1H)
    assert (d.via, d.status) == ("http", 200)
    assert world.b.shared is not None
    await world.b.shared.wait_for(lambda s: s.mute(TARGET) is not None, timeout=1)
    decision = await alert(world.b)
    assert decision["decision"] == "muted"
    assert "alice" in decision["reason"]
    assert (replicas(world.sim, f"{TARGET}-v1"), replicas(world.sim, f"{TARGET}-v2")) == before  # nothing scaled
    [event] = [e for e in ours(world.sim) if e["reason"] == "Muted"]
    assert event["involvedObject"]["name"] == f"{TARGET}-v1"
    assert "by alice from Slack" in event["message"]
    # the rollback's thread says who muted it, the channel has the door's announcement (as for the CLI)
    await world.slack.wait_for(lambda: any("muted `finance-service` for 1 h by <@U0ALICE> from Slack" in t
                                           for t in thread(world.slack, parent)))
    await world.slack.wait_for(lambda: any("muted for 1 h" in t and "by alice from Slack" in t
                                           for t in said(world.slack)))


async def test_re_promote_on_a_rolled_back_rollback_puts_the_split_back_to_the_phase_before_it(
    world: World,
) -> None:
    parent = await rolled_back(world)
    assert (replicas(world.sim, f"{TARGET}-v2"), replicas(world.sim, f"{TARGET}-v1")) == (0, 5)
    assert has_button(parent, REPROMOTE)
    [button] = [el for b in parent.blocks if b.get("type") == "actions" for el in b.get("elements") or []
                if el.get("action_id") == REPROMOTE]
    assert "week 1" in button["confirm"]["text"]["text"]  # a confirm dialog names where it goes
    d = await world.slack.click(ALICE, CHANNEL, parent.ts, REPROMOTE)  # the dialog confirmed
    assert (d.via, d.status) == ("http", 200)
    note = await world.slack.wait_for(lambda: next(
        (t for t in thread(world.slack, parent) if "re-promoted to week 1 by <@U0ALICE> from Slack" in t), None),
        timeout=30)
    assert "Gate for leaving not started" in note and "gate passed" in note  # the review, in the thread
    assert (replicas(world.sim, f"{TARGET}-v2"), replicas(world.sim, f"{TARGET}-v1")) == (1, 4)  # week 1's split
    reasons = {e["reason"] for e in ours(world.sim)}
    assert {"PromotionRequested", "Promoted"} <= reasons


async def test_re_promote_by_someone_not_on_the_promote_allowlist_is_refused_and_changes_nothing(
    world: World,
) -> None:
    parent = await rolled_back(world)
    d = await world.slack.click(BOB, CHANNEL, parent.ts, REPROMOTE)
    assert "You are not allowed to promote from Slack" in d.answers[0].text
    assert (replicas(world.sim, f"{TARGET}-v2"), replicas(world.sim, f"{TARGET}-v1")) == (0, 5)
    assert not {"PromotionRequested", "Promoted"} & {e["reason"] for e in ours(world.sim)}
    assert not any("re-promot" in t for t in thread(world.slack, parent))


async def test_acknowledge_is_recorded_as_a_kubernetes_event_and_shown_on_the_message(world: World) -> None:
    parent = await rolled_back(world)
    d = await world.slack.click(ALICE, CHANNEL, parent.ts, ACKNOWLEDGE)
    assert "You acknowledged" in d.answers[-1].text
    [event] = [e for e in ours(world.sim) if e["reason"] == "RollbackAcknowledged"]
    assert event["involvedObject"]["name"] == f"{TARGET}-v1"
    assert "acknowledged by alice from Slack" in event["message"]
    await world.slack.wait_for(lambda: any("acknowledged rollback" in t for t in thread(world.slack, parent)))


async def test_re_promote_is_refused_when_the_gate_is_not_passed_and_the_review_is_in_the_thread(
    world: World,
) -> None:
    parent = await rolled_back(world)
    world.prometheus.value = "0.5"  # half the requests failing: every criterion fails
    d = await world.slack.click(ALICE, CHANNEL, parent.ts, REPROMOTE)
    assert (d.via, d.status) == ("http", 200)
    note = await world.slack.wait_for(lambda: next(
        (t for t in thread(world.slack, parent) if "re-promotion of `finance-service` to week 1" in t), None),
        timeout=30)
    assert "refused: gate NOT passed (failed:" in note and "Nothing changed" in note
    assert "FAIL" in note  # the review's rows
    assert (replicas(world.sim, f"{TARGET}-v2"), replicas(world.sim, f"{TARGET}-v1")) == (0, 5)
    assert not {"PromotionRequested", "Promoted"} & {e["reason"] for e in ours(world.sim)}
