"""People steering the receiver: run-time mutes every replica obeys, the blast-radius
breaker, and their doors (CLI, HTTP). Real parts: receivers as `receiver serve` builds
them on one Kubernetes simulator, the fake Slack over real HTTP, kubectl where it is there.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from receiver.actions import Actions, Actor
from receiver.cli import main
from receiver.cli.serve import RunningReceiver, start_receiver
from receiver.kube import Kube, RetryPolicy, new_api_client
from receiver.kube.shared_state import STATE_NAME, SharedStateStore
from receiver.notify.factory import make_notifier
from sim.kube import KubeSim
from sim.slack import FakeSlack
from tests.fixtures.kube import Kubectl
from tests.fixtures.receiver import firing_payload

pytestmark = pytest.mark.timeout(90)

NS = "finance"
ROOT = Path(__file__).resolve().parents[2]
TOKEN, ADMIN = "s3cret-webhook-token", "s3cret-admin-token"
CHANNEL, CHANNEL_ID = "#rollbacks", "C0ROLLBACKS"
SERVICES = ("svc-a", "svc-b", "svc-c", "svc-d", "svc-e")
FAST = RetryPolicy(base_seconds=0.005, cap_seconds=0.05, give_up_after_seconds=5)


def add_services(sim: KubeSim, names: tuple[str, ...]) -> None:
    """Each name a copy of the seeded finance-service (v1 at 4, v2 at 1) in the same namespace."""
    text = next(KubeSim.default_manifests().glob("*.yaml")).read_text()
    for name in names:
        for doc in yaml.safe_load_all(text.replace("finance-service", name)):
            if isinstance(doc, dict) and doc.get("kind") == "Deployment":
                sim.apply(doc)


def write_config(tmp_path: Path, slack: FakeSlack, names: tuple[str, ...] = ("finance-service",)) -> Path:
    cfg = {
        "settings": {"breaker": {"max_targets": 3, "window_seconds": 300}},
        "rules": [{"name": "error-rate", "matchers": ['alertname="HighErrorRate"'], "threshold": 0.05,
                   "unit": "ratio"}],
        "targets": [{"name": n, "namespace": NS, "matchers": [f'service="{n}"'], "stable": f"{n}-v1",
                     "canary": f"{n}-v2", "replicas": 5} for n in names],
        "slack": {"mode": "bot", "api_url": slack.api_url, "default_channel": CHANNEL,
                  "oncall_mention": "<!here>"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def env(slack: FakeSlack) -> dict[str, str]:
    return {"RECEIVER_WEBHOOK_TOKEN": TOKEN, "RECEIVER_ADMIN_TOKEN": ADMIN, "SLACK_BOT_TOKEN": slack.token}


def said(slack: FakeSlack) -> list[str]:
    return [html.unescape(m.text) for m in slack.messages(CHANNEL)]


def ours(sim: KubeSim) -> list[dict[str, Any]]:
    """Events the receiver wrote, as `kubectl get events` lists them."""
    return [e for e in sim.list("events", NS) if e.get("reportingComponent") == "rollback-receiver.io/receiver"]


def canary(sim: KubeSim, name: str) -> int:
    return int(((sim.get("deployments", NS, f"{name}-v2") or {}).get("spec") or {}).get("replicas", 0))


async def post(rx: RunningReceiver, path: str, body: Any, token: str = ADMIN, method: str = "POST") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
        method, f"{rx.url}{path}", data=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as resp:
        return resp.status, await resp.json()


async def alert(rx: RunningReceiver, service: str) -> list[dict[str, Any]]:
    status, answer = await post(rx, "/webhook", firing_payload(service=service, fingerprint=f"fp-{service}"),
                                token=TOKEN)
    assert status == 200, answer
    return list(answer["decisions"])


@dataclass
class World:
    sim: KubeSim
    slack: FakeSlack
    config: Path
    kubeconfig: Path
    env: dict[str, str]


@pytest.fixture
async def world(kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path) -> AsyncIterator[World]:
    slack = FakeSlack(channels={CHANNEL: CHANNEL_ID})
    await slack.start()
    try:
        yield World(kube_sim, slack, write_config(tmp_path, slack), kubeconfig_path, env(slack))
    finally:
        await slack.stop()


@pytest.fixture
async def replicas(world: World) -> AsyncIterator[list[RunningReceiver]]:
    """Two receivers on the same cluster, as two pods of the Deployment."""
    made = [await start_receiver(world.config, kubeconfig=world.kubeconfig, identity=f"replica-{n}",
                                 env=world.env, watch_config=False) for n in "ab"]
    try:
        yield made
    finally:
        for rx in made:
            await rx.stop(grace=5)


def cli(world: World, monkeypatch: pytest.MonkeyPatch, *argv: str) -> Any:
    """`receiver ARGV --config ... --kubeconfig ...`, in a thread (it runs its own event loop)."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", world.slack.token)
    full = [*argv, "--config", str(world.config), "--kubeconfig", str(world.kubeconfig), "--request-timeout", "5s"]
    return asyncio.to_thread(main, full)


# -- mutes ---------------------------------------------------------------------------------


async def test_a_mute_set_through_one_replica_is_obeyed_by_the_other_within_a_second(
    world: World, replicas: list[RunningReceiver]
) -> None:
    a, b = replicas
    status, answer = await post(a, "/mutes", {"target": "finance-service", "for": "2h",
                                             "reason": "db migration", "by": "alice"})
    assert status == 200, answer
    assert answer["message"].startswith("finance-service muted for 2 h (until ")
    assert b.shared is not None
    await b.shared.wait_for(lambda s: s.mute("finance-service") is not None, timeout=1)
    [decision] = await alert(b, "finance-service")
    assert decision["decision"] == "muted"
    assert "muted by alice" in decision["reason"]
    assert canary(world.sim, "finance-service") == 1  # nothing scaled
    # announced in the target's channel, recorded on its stable Deployment
    await world.slack.wait_for(lambda: any("muted for 2 h" in t and "alice over HTTP" in t for t in said(world.slack)))
    [event] = [e for e in ours(world.sim) if e["reason"] == "Muted"]
    assert event["involvedObject"]["name"] == "finance-service-v1"
    assert "db migration" in event["message"]
    # /health on either replica shows it as a run-time mute
    async with aiohttp.ClientSession() as http, http.get(
            f"{b.url}/health", headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        health = await resp.json()
    assert health["config"]["muted_targets"]["finance-service"]["source"] == "runtime"
    assert health["dependencies"]["shared_state"] == "ok"
    # the Slack note of the muted decision names the run-time mute that applied
    await world.slack.wait_for(lambda: any(t.startswith("Muted: would have rolled back") and "alice" in t
                                           for t in said(world.slack)))


async def test_unmuting_through_the_cli_lets_the_next_alert_roll_back_on_every_replica(
    world: World, replicas: list[RunningReceiver], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], kubectl: Kubectl,
) -> None:
    a, b = replicas
    assert await cli(world, monkeypatch, "mute", "--all", "--for", "30m", "--reason", "freeze",
                     "--by", "carol") == 0
    out = capsys.readouterr().out
    assert "all targets muted for 30 min" in out and "carol from the CLI: freeze" in out
    assert f"written: ConfigMap {NS}/{STATE_NAME}" in out
    assert b.shared is not None
    await b.shared.wait_for(lambda s: s.mute(None) is not None, timeout=1)
    assert (await alert(b, "finance-service"))[0]["decision"] == "muted"
    assert await cli(world, monkeypatch, "unmute", "--all", "--by", "carol") == 0
    assert "all targets unmuted by carol from the CLI" in capsys.readouterr().out
    await b.shared.wait_for(lambda s: s.mute(None) is None, timeout=1)
    assert (await alert(b, "finance-service"))[0]["decision"] == "roll_back"
    # both actions are in the cluster's story, on the state ConfigMap (every target), and in Slack
    events = await kubectl("get", "events", "-n", NS, "--field-selector", f"involvedObject.name={STATE_NAME}")
    assert "Muted" in events.stdout and "Unmuted" in events.stdout, events.stdout
    await world.slack.wait_for(lambda: any("all targets unmuted by carol from the CLI" in t for t in said(world.slack)))
    await a.executor.close(5)


async def test_a_mute_expiry_is_announced_once_across_replicas(world: World, tmp_path: Path) -> None:
    """Expiry by a fake clock: both replicas look, one Event and one Slack message result."""
    now = [datetime(2026, 12, 1, 3, 0, tzinfo=UTC)]
    config_path = write_config(tmp_path, world.slack)
    from receiver.domain.settings import load_config

    config = load_config(config_path)
    built: list[tuple[Any, ...]] = []
    for n in range(2):
        api = await new_api_client(world.kubeconfig)
        store = SharedStateStore(Kube(api, FAST), lambda: config, clock=lambda: now[0])
        await store.start()
        await store.wait_synced(5)
        notifier = make_notifier(config.slack, world.env, config=lambda: config)
        await notifier.start()
        built.append((api, store, notifier, Actions(Kube(api, FAST), lambda: config, store, notifier,
                                                    identity=f"replica-{n}")))
    try:
        (_, _, a_slack, a), (_, b_store, b_slack, b) = built
        await a.mute("finance-service", until=timedelta(hours=1), reason="load test", actor=Actor("dave", "slack"))
        await b_store.wait_for(lambda s: s.mute("finance-service") is not None, timeout=1)
        before = now[0]
        now[0] += timedelta(hours=1, seconds=1)
        told = [await a.announce_expired(before, now[0]), await b.announce_expired(before, now[0])]
        assert sorted(len(t) for t in told) == [0, 1]
        assert await a.announce_expired(now[0], now[0] + timedelta(seconds=5)) == []  # a later look: nothing new
        await a_slack.drained()
        await b_slack.drained()
        expired = [t for t in said(world.slack) if "expired" in t]
        assert expired == ["mute of finance-service by dave expired at 2026-12-01 04:00 UTC (load test)"]
        assert [e["reason"] for e in ours(world.sim)].count("MuteExpired") == 1
    finally:
        for api, store, notifier, _ in built:
            await notifier.close(1)
            await store.stop()
            await api.close()


# -- the breaker -----------------------------------------------------------------------------


async def test_the_breaker_opens_on_the_fourth_target_and_closing_it_through_the_cli_resumes_rollbacks(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_services(kube_sim, SERVICES)
    slack = FakeSlack(channels={CHANNEL: CHANNEL_ID})
    await slack.start()
    world = World(kube_sim, slack, write_config(tmp_path, slack, SERVICES), kubeconfig_path, env(slack))
    a = await start_receiver(world.config, kubeconfig=kubeconfig_path, identity="replica-a", env=world.env,
                             watch_config=False)
    b = await start_receiver(world.config, kubeconfig=kubeconfig_path, identity="replica-b", env=world.env,
                             watch_config=False)
    try:
        # three targets roll back, through either replica: the count is the cluster's
        for rx, name in ((a, "svc-a"), (b, "svc-b"), (a, "svc-c")):
            assert (await alert(rx, name))[0]["decision"] == "roll_back"
            await b.watcher.wait_for(lambda n=name: bool(b.watcher.states()[n].recent_alert_starts), 5)
        [fourth] = await alert(b, "svc-d")
        assert fourth["decision"] == "breaker_open"
        assert "common cause" in fourth["reason"]
        assert a.shared is not None
        await a.shared.wait_for(lambda s: s.breaker.is_open, timeout=1)
        assert (await alert(a, "svc-e"))[0]["decision"] == "breaker_open"  # the other replica stops too
        await kube_sim.wait_for(lambda: all(canary(kube_sim, n) == 0 for n in ("svc-a", "svc-b", "svc-c")), 30)
        assert canary(kube_sim, "svc-d") == 1 and canary(kube_sim, "svc-e") == 1
        await slack.wait_for(lambda: any("Blast-radius breaker open" in t for t in said(slack)))
        for rx in (a, b):
            await rx.notifier.drained()  # type: ignore[attr-defined]
        loud = [t for t in said(slack) if "Blast-radius breaker open" in t]
        assert len(loud) == 1
        assert loud[0].startswith("<!here>") and "svc-d" in loud[0] and "infrastructure" in loud[0]
        for rx in (a, b):
            assert rx.metrics.value("receiver_breaker_open", target="svc-e") == 1
        # a person closes it; every replica rolls back again
        assert await cli(world, monkeypatch, "breaker", "close", "--by", "erin") == 0
        assert "blast-radius breaker closed by erin from the CLI" in capsys.readouterr().out
        await a.shared.wait_for(lambda s: not s.breaker.is_open, timeout=1)
        assert a.metrics.value("receiver_breaker_open", target="svc-e") == 0
        assert (await alert(a, "svc-e"))[0]["decision"] == "roll_back"
        await slack.wait_for(lambda: any("breaker closed by erin" in t for t in said(slack)))
        assert any(e["reason"] == "BreakerClosed" for e in ours(kube_sim))
    finally:
        await a.stop(grace=5)
        await b.stop(grace=5)
        await slack.stop()


# -- bad input changes nothing ---------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ("mute", "finance-service", "--for", "2x", "--reason", "r"),
    ("mute", "finance-service", "--for", "0m", "--reason", "r"),
    ("mute", "finance-service", "--for", "90", "--reason", "r"),
    ("mute", "finance-service", "--until", "tomorrow", "--reason", "r"),
    ("mute", "finance-service", "--until", "2026-12-24T18:00:00", "--reason", "r"),
    ("mute", "finance-service", "--until", "2020-01-01T00:00:00Z", "--reason", "r"),
    ("mute", "nosuch-service", "--for", "1h", "--reason", "r"),
    ("mute", "finance-service", "--for", "1h", "--reason", " "),
    ("mute", "finance-service", "--for", "1h", "--reason", "r", "--by", ""),
    ("mute", "finance-service", "--all", "--for", "1h", "--reason", "r"),
    ("mute", "finance-service", "--for", "1h", "--until", "2030-01-01T00:00:00Z", "--reason", "r"),
    ("mute", "finance-service", "--reason", "r"),
    ("unmute", "nosuch-service"),
    ("unmute", "finance-service", "--by", ""),
    ("unmute",),
    ("breaker", "open"),
    ("breaker", "close", "--by", " "),
])
async def test_bad_input_on_the_command_line_exits_2_and_writes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    try:
        code = await cli(world, monkeypatch, *argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    assert code == 2
    assert "error" in capsys.readouterr().err
    assert world.sim.get("configmaps", NS, STATE_NAME) is None
    assert ours(world.sim) == []
    assert said(world.slack) == []


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/mutes", {"target": "finance-service", "for": "soon", "reason": "r", "by": "a"}),
    ("POST", "/mutes", {"target": "finance-service", "until": "2020-01-01T00:00:00Z", "reason": "r", "by": "a"}),
    ("POST", "/mutes", {"target": "finance-service", "until": "2026-12-24 18:00", "reason": "r", "by": "a"}),
    ("POST", "/mutes", {"target": "finance-service", "for": "1h", "until": "2030-01-01T00:00:00Z",
                        "reason": "r", "by": "a"}),
    ("POST", "/mutes", {"target": "finance-service", "reason": "r", "by": "a"}),
    ("POST", "/mutes", {"target": "nosuch", "for": "1h", "reason": "r", "by": "a"}),
    ("POST", "/mutes", {"for": "1h", "reason": "r", "by": "a"}),
    ("POST", "/mutes", {"target": "finance-service", "for": "1h", "reason": "", "by": "a"}),
    ("POST", "/mutes", {"target": "finance-service", "for": "1h", "reason": "r"}),
    ("POST", "/mutes", {"target": "finance-service", "for": 3600, "reason": "r", "by": "a"}),
    ("POST", "/mutes", {"target": "finance-service", "for": "1h", "reason": "r", "by": "a", "scope": "x"}),
    ("POST", "/mutes", b"not json"),
    ("POST", "/mutes", ["finance-service"]),
    ("DELETE", "/mutes/nosuch?by=a", b""),
    ("DELETE", "/mutes/finance-service", b""),
    ("POST", "/breaker/close", {}),
    ("POST", "/breaker/close", {"by": "a", "force": True}),
])
async def test_bad_input_over_http_is_answered_400_and_writes_nothing(
    world: World, replicas: list[RunningReceiver], method: str, path: str, body: Any
) -> None:
    status, answer = await post(replicas[0], path, body, method=method)
    assert status == 400, answer
    assert answer["written"] == "nothing" and answer["error"]
    assert world.sim.get("configmaps", NS, STATE_NAME) is None
    assert ours(world.sim) == []


async def test_the_person_action_routes_need_the_admin_credential(
    world: World, replicas: list[RunningReceiver]
) -> None:
    for method, path in (("POST", "/mutes"), ("DELETE", "/mutes/_all?by=a"), ("POST", "/breaker/close")):
        status, _ = await post(replicas[0], path, {"by": "a"}, token=TOKEN, method=method)  # the webhook's token
        assert status == 401
    assert world.sim.get("configmaps", NS, STATE_NAME) is None


async def test_a_mute_removed_over_http_is_said_once_and_a_second_removal_writes_nothing(
    world: World, replicas: list[RunningReceiver]
) -> None:
    a, b = replicas
    status, _ = await post(a, "/mutes", {"target": None, "until": "2099-01-01T00:00:00Z", "reason": "freeze",
                                         "by": "alice"})
    assert status == 400  # more than 30 days away: belongs in config.yaml
    status, answer = await post(a, "/mutes", {"target": None, "for": "1h", "reason": "freeze", "by": "alice"})
    assert status == 200 and answer["mute"]["target"] is None
    status, answer = await post(b, "/mutes/_all?by=bob", b"", method="DELETE")
    assert (status, answer["changed"]) == (200, True)
    assert answer["message"] == "all targets unmuted by bob over HTTP (was muted by alice: freeze)"
    status, answer = await post(b, "/mutes/_all?by=bob", b"", method="DELETE")
    assert (status, answer["changed"]) == (200, False)
    assert [e["reason"] for e in ours(world.sim)] == ["Muted", "Unmuted"]
    status, answer = await post(a, "/breaker/close", {"by": "bob"})
    assert (status, answer["changed"]) == (200, False)  # it was not open: nothing written


async def test_a_running_pair_of_replicas_announces_a_short_mutes_expiry_once(
    world: World, replicas: list[RunningReceiver]
) -> None:
    a, b = replicas
    status, answer = await post(a, "/mutes", {"target": "finance-service", "for": "1s", "reason": "blip",
                                             "by": "alice"})
    assert status == 200 and answer["message"].startswith("finance-service muted for 1 s")
    await world.slack.wait_for(lambda: any("expired" in t for t in said(world.slack)), timeout=10)
    for rx in (a, b):  # (one announcement across replicas is pinned by the fake-clock test above)
        await asyncio.wait_for(rx.notifier.drained(), 5)  # type: ignore[attr-defined]
    assert [t for t in said(world.slack) if "expired" in t] == [
        f"mute of finance-service by alice expired at {answer['mute']['until'][:10]} "
        f"{answer['mute']['until'][11:16]} UTC (blip)"]
    assert [e["reason"] for e in ours(world.sim)].count("MuteExpired") == 1


async def test_over_http_a_monitoring_jwt_cannot_mute_and_an_actions_jwt_mutes_as_its_subject(
    world: World, tmp_path: Path
) -> None:
    import time

    import jwt

    secret = "jwt-signing-secret-for-the-test-0123456789"
    (tmp_path / "jwt").write_text(secret)
    cfg = yaml.safe_load(world.config.read_text())
    cfg["auth"] = {"jwt_secret_file": str(tmp_path / "jwt")}
    world.config.write_text(yaml.safe_dump(cfg))
    rx = await start_receiver(world.config, kubeconfig=world.kubeconfig, identity="replica-a",
                              env=world.env, watch_config=False)
    try:
        def token(*permissions: str) -> str:
            return jwt.encode({"sub": "carol", "exp": int(time.time()) + 600, "permissions": list(permissions)},
                              secret, algorithm="HS256")

        body = {"target": "finance-service", "for": "1h", "reason": "db migration", "by": "mallory"}
        status, _ = await post(rx, "/mutes", body, token=token("admin:monitoring"))
        assert status == 403  # reading the receiver is not silencing it
        assert world.sim.get("configmaps", NS, STATE_NAME) is None
        status, answer = await post(rx, "/mutes", body, token=token("admin:actions"))
        assert status == 200, answer
        assert "carol" in answer["message"] and "mallory" not in answer["message"]
    finally:
        await rx.stop(grace=5)
