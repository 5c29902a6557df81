"""Slack actions as `receiver serve` wires them (start_receiver), against the simulator and
the fake Slack over real HTTP and WebSocket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.cli.serve import start_receiver
from receiver.domain.settings import ConfigError, load_config
from sim.kube import KubeSim
from sim.slack import FakeSlack
from tests.fixtures.slack import TOKEN
from tests.slack.actions_harness import ALICE, BOB, RecordingActions

ROOT = Path(__file__).resolve().parents[2]
ENV = {"RECEIVER_WEBHOOK_TOKEN": "s3cret-webhook-token", "SLACK_BOT_TOKEN": TOKEN}

pytestmark = pytest.mark.timeout(60)


def config(tmp_path: Path, fake: FakeSlack, **slack: Any) -> Path:
    cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
    cfg["slack"].update({"mode": "bot", "api_url": fake.api_url, "default_channel": "#rollbacks",
                         "actions": {"allow": {"mute": [ALICE]}}, **slack})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


async def test_with_an_app_token_serve_takes_commands_over_socket_mode(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    actions = RecordingActions()
    rx = await start_receiver(config(tmp_path, fake_slack), kubeconfig=kubeconfig_path, watch_config=False,
                              env={**ENV, "SLACK_APP_TOKEN": fake_slack.app_token}, actions=actions)
    try:
        assert rx.slack is not None and rx.slack.events is None  # no inbound endpoint without a secret
        await fake_slack.wait_for(fake_slack.socket_connected)
        d = await fake_slack.command(ALICE, "#rollbacks", "mute finance-service 30m canary looks fine")
        status = await fake_slack.command(BOB, "#rollbacks", "status finance-service")
        history = await fake_slack.command(BOB, "#rollbacks", "history finance-service")
    finally:
        await rx.stop(grace=0)
    assert d.via == "socket" and d.acked
    [(name, target, kw)] = actions.calls
    assert (name, target, kw["reason"], kw["actor"].slack_user) == ("mute", "finance-service",
                                                                     "canary looks fine", ALICE)
    assert "muted `finance-service` for 30 min by <@U0ALICE> from Slack" in d.answers[0].text
    # the same view as `receiver status`: phase and both Deployments, read from the cluster
    assert status.answers[0].text == "*Status*\n• `finance-service`: week 1 · canary 1/1 ready · stable 4/4 ready"
    assert history.answers[0].text == "No rollbacks of `finance-service` recorded."
    assert not fake_slack.socket_connected()  # stopped with the receiver


async def test_with_a_signing_secret_serve_takes_commands_at_slack_events(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    actions = RecordingActions()
    rx = await start_receiver(config(tmp_path, fake_slack), kubeconfig=kubeconfig_path, watch_config=False,
                              env={**ENV, "SLACK_SIGNING_SECRET": fake_slack.signing_secret}, actions=actions)
    fake_slack.request_url = f"{rx.url}/slack/events"
    try:
        d = await fake_slack.command(BOB, "#rollbacks", "unmute finance-service")
    finally:
        await rx.stop(grace=0)
    assert (d.via, d.status) == ("http", 200)
    assert actions.calls == []
    assert "You are not allowed to mute from Slack" in d.answers[0].text


@pytest.mark.parametrize(("slack", "env", "said"), [
    ({"mode": "console"}, {"SLACK_SIGNING_SECRET": "x"}, "need slack.mode: bot"),
    ({"actions": {"transport": "socket"}}, {}, "transport is socket but no app-level token"),
    ({}, {"SLACK_APP_TOKEN": "xoxb-not-an-app-token"}, "must be an xapp- token"),
])
async def test_a_half_set_up_slack_actions_is_refused_at_start(
    tmp_path: Path, fake_slack: FakeSlack, slack: dict[str, Any], env: dict[str, str], said: str
) -> None:
    with pytest.raises(ConfigError, match=said):
        await start_receiver(config(tmp_path, fake_slack, **slack), kubeconfig=tmp_path / "none",
                             watch_config=False, env={**ENV, **env})


async def test_a_refused_app_token_degrades_slack_in_health(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    rx = await start_receiver(config(tmp_path, fake_slack), kubeconfig=kubeconfig_path, watch_config=False,
                              env={**ENV, "SLACK_APP_TOKEN": "xapp-1-revoked"})
    try:
        assert rx.slack is not None
        await rx.slack.settled.wait()
        problem = rx.notifier.problem()  # type: ignore[attr-defined]
    finally:
        await rx.stop(grace=0)
    assert "Socket Mode refused (invalid_auth)" in problem
    assert not fake_slack.socket_connected()
