"""Slack after a crash and while Slack refuses: no duplicate parent or step; failures said once.

Real slack-sdk against the fake Slack over HTTP; a restart is a second notifier, as a new
receiver process would build it, fed the records its executor resumes from the Lease.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import yaml

from receiver.cli import main
from receiver.cli.serve import start_receiver
from receiver.domain.settings import ConfigError, SlackSettings, load_config
from receiver.notify.factory import make_notifier, slack_credentials_problem
from sim.kube import KubeSim
from sim.slack import FakeSlack
from tests.fixtures.receiver import firing_payload
from tests.fixtures.slack import BotFactory, LogWatch, successful_rollback
from tests.slack.test_conversation import play

ROOT = Path(__file__).resolve().parents[2]


def step_names(fake_slack: FakeSlack, ts: str) -> list[str]:
    return [r.text.split(":")[0] for r in fake_slack.thread("#finance-alerts", ts)]


# --- item: after a crash, continue the earlier parent and its thread ------------------------


async def test_a_receiver_restarted_after_its_parent_landed_continues_the_same_thread(
    fake_slack: FakeSlack, slack_bot: BotFactory
) -> None:
    async def killed_before_the_lease_write(rollback_id: str, channel: str, ts: str) -> None:
        raise RuntimeError("process killed")  # the thread ts never reaches the Lease

    calls = successful_rollback()
    first = await slack_bot(on_thread=killed_before_the_lease_write)
    await play(first, calls[:3])
    [parent] = fake_slack.messages("#finance-alerts")
    assert parent.text.endswith("State: scaling")
    await first.close(1.0)

    stored: list[tuple[str, str, str]] = []

    async def on_thread(rollback_id: str, channel: str, ts: str) -> None:
        stored.append((rollback_id, channel, ts))

    second = await slack_bot(on_thread=on_thread)
    resumed = calls[2][0]  # the record as the Lease has it: two steps, no slack ts
    assert resumed.slack_ts is None
    await play(second, [(resumed, None), *calls[3:]])

    assert fake_slack.messages("#finance-alerts") == [parent]  # no second parent
    assert "rolled back in 42 s" in parent.text  # the first one is not stuck at "scaling"
    assert step_names(fake_slack, parent.ts) == ["order", "scale-canary", "scale-stable", "verify"]
    assert stored == [(resumed.id, "C0FINANCE", parent.ts)]  # and the Lease gets it now


async def test_a_resumed_run_posts_only_the_steps_its_thread_lacks(
    fake_slack: FakeSlack, slack_bot: BotFactory
) -> None:
    calls = successful_rollback()
    first = await slack_bot()
    await play(first, calls[:3])
    [parent] = fake_slack.messages("#finance-alerts")
    await first.close(1.0)

    second = await slack_bot()  # the Lease carries the thread; the resumed run replays from the start
    await play(second, [(replace(rec, slack_channel=parent.channel, slack_ts=parent.ts), st) for rec, st in calls])

    assert fake_slack.messages("#finance-alerts") == [parent]
    assert step_names(fake_slack, parent.ts) == ["order", "scale-canary", "scale-stable", "verify"]


async def test_without_the_history_scopes_a_restart_still_posts_and_says_which_scopes_to_add(
    fake_slack: FakeSlack, slack_bot: BotFactory, log_watch: LogWatch
) -> None:
    fake_slack.fail_next("conversations.list", error="missing_scope")
    n = await slack_bot()
    await play(n, successful_rollback())
    [parent] = fake_slack.messages("#finance-alerts")
    assert "rolled back in 42 s" in parent.text
    [refused] = log_watch.find("slack_lookup_refused")
    assert "channels:history" in refused["fix"] and refused["log_level"] == "warning"
    assert n.metrics.value("receiver_slack_up") == 1  # posting works: Slack is not down


# --- item: a mode that cannot work is a configuration error -------------------------------


def test_a_bot_without_a_token_or_a_webhook_without_a_url_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"slack\.mode is bot but environment variable SLACK_BOT_TOKEN"):
        make_notifier(SlackSettings(mode="bot"), {})
    with pytest.raises(ConfigError, match=r"slack\.mode is webhook but environment variable SLACK_WEBHOOK_URL"):
        make_notifier(SlackSettings(mode="webhook"), {"SLACK_WEBHOOK_URL": "  "})
    missing = tmp_path / "token"
    cfg = load_config(ROOT / "config.yaml")
    cfg = cfg.model_copy(update={"slack": cfg.slack.model_copy(update={"mode": "bot", "token_file": missing})})
    assert slack_credentials_problem(cfg, {"SLACK_BOT_TOKEN": "xoxb-1"}) == (
        f"slack.mode is bot but slack file {missing} cannot be read: No such file or directory")
    assert slack_credentials_problem(load_config(ROOT / "config.yaml"), {}) is None  # console needs nothing


def bot_config(tmp_path: Path) -> Path:
    cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
    cfg["slack"]["mode"] = "bot"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_check_config_fails_a_bot_without_its_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = bot_config(tmp_path)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    assert main(["check-config", str(path)]) == 2  # a configuration error, as serve exits
    assert (f"Checking '{path}'  FAILED: slack.mode is bot but environment variable SLACK_BOT_TOKEN is empty or "
            "unset: put a bot token (xoxb-...) there") in capsys.readouterr().out
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-set")
    assert main(["check-config", str(path)]) == 0


def test_serve_exits_2_with_one_line_when_the_bot_has_no_token(tmp_path: Path) -> None:
    path = bot_config(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "RECEIVER_WEBHOOK_TOKEN": "t0ken", "KUBECONFIG": str(tmp_path / "none")}
    done = subprocess.run([sys.executable, "-m", "receiver", "serve", "--config", str(path), "--log-format", "json",
                           "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "SLACK_BOT_TOKEN" in lines[0] and "Traceback" not in lines[0]


# --- item: lasting failures at run time: gauge, /health, one log line per change ----------------


async def test_a_revoked_token_marks_slack_down_once_and_up_again_once_it_works(
    fake_slack: FakeSlack, slack_bot: BotFactory, log_watch: LogWatch
) -> None:
    n = await slack_bot()
    await log_watch.wait_for("slack_bot_ready")
    assert n.metrics.value("receiver_slack_up") == 1 and n.problem() is None
    fake_slack.token = "xoxb-reissued"  # the bot's token was revoked in Slack
    calls = successful_rollback()
    await play(n, calls[:3])
    assert n.metrics.value("receiver_slack_up") == 0
    assert n.problem() is not None and "invalid_auth" in n.problem()  # type: ignore[operator]
    [down] = [e for e in log_watch.entries if e["log_level"] == "error"]  # once, not per message
    assert down["event"] == "slack_down" and "SLACK_BOT_TOKEN" in down["fix"]

    fake_slack.token = "xoxb-test-token"  # fixed
    await play(n, calls[3:])
    assert n.metrics.value("receiver_slack_up") == 1 and n.problem() is None
    assert [e["event"] for e in log_watch.entries if e["log_level"] == "error"] == ["slack_down", "slack_up"]
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", str(e["event"])) for e in log_watch.entries)


async def test_health_shows_slack_degraded_while_slack_refuses_the_token(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path, log_watch: LogWatch
) -> None:
    slack = FakeSlack(token="xoxb-current", channels={"#rollbacks": "C0ROLLBACKS"})
    await slack.start()
    cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
    cfg["slack"].update(mode="bot", api_url=slack.api_url)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {"RECEIVER_WEBHOOK_TOKEN": "hook-t0ken", "RECEIVER_ADMIN_TOKEN": "admin-t0ken",
           "SLACK_BOT_TOKEN": "xoxb-revoked"}
    rx = await start_receiver(path, kubeconfig=kubeconfig_path, identity="rx", env=env, watch_config=False)
    try:
        await log_watch.wait_for("slack_down")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{rx.url}/health", headers={"Authorization": "Bearer admin-t0ken"}) as resp:
                health = await resp.json()
            async with http.get(f"{rx.url}/health/ready") as resp:
                ready_status = resp.status
            async with http.get(f"{rx.url}/metrics") as resp:
                metrics_text = await resp.text()
    finally:
        await rx.stop(1)
        await slack.stop()
    assert health["status"] == "degraded"
    assert "invalid_auth" in health["dependencies"]["slack"]
    assert "xoxb-revoked" not in str(health)
    assert ready_status == 200  # Slack is not a reason to take the receiver out of service
    assert "receiver_slack_up 0.0" in metrics_text


async def test_a_served_rollback_whose_parent_answer_was_lost_continues_that_parent_and_keeps_it(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    slack = FakeSlack(channels={"#rollbacks": "C0ROLLBACKS"})
    await slack.start()
    cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
    cfg["slack"].update(mode="bot", api_url=slack.api_url, timeout_seconds=0.5)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {"RECEIVER_WEBHOOK_TOKEN": "hook-t0ken", "SLACK_BOT_TOKEN": slack.token}
    rx = await start_receiver(path, kubeconfig=kubeconfig_path, identity="rx", env=env, watch_config=False)
    try:
        await rx.watcher.wait_synced(5)
        slack.fail_next("chat.postMessage", hang=True)  # the parent lands, its answer never comes
        async with aiohttp.ClientSession() as http, http.post(
            f"{rx.url}/webhook", json=firing_payload(), headers={"Authorization": "Bearer hook-t0ken"}
        ) as resp:
            assert resp.status == 200
        [parent] = await slack.wait_for(
            lambda: [m for m in slack.messages("#rollbacks") if "rolled back in" in m.text], timeout=20)
        await slack.wait_for(lambda: any(r.text.startswith("verify") for r in slack.thread("#rollbacks", parent.ts)))
        [record] = await rx.executor.list_rollbacks()
    finally:
        await rx.stop(1)
        await slack.stop()
    assert slack.messages("#rollbacks") == [parent]  # no second parent
    steps = [r.text.split(":")[0] for r in slack.thread("#rollbacks", parent.ts)]
    assert len(steps) == len(set(steps)) and steps[-1] == "verify"
    assert (record.slack_channel, record.slack_ts) == ("C0ROLLBACKS", parent.ts)  # the record keeps the thread
