"""`receiver rollback TARGET --config PATH`: live progress, exit 0 only when verified."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from receiver.domain.rollback import Phase
from sim.slack import FakeSlack
from tests.executor.conftest import CANARY, NS, STABLE, MakeExecutor, decision, make_config


async def receiver(kubeconfig: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "rollback", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


def config_file(tmp_path: Path, **settings: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(make_config(**settings).model_dump(mode="json")))
    return path


async def test_the_manual_rollback_shows_each_step_and_exits_0_once_verified(
    kube_sim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    code, out, err = await receiver(kubeconfig_path, "finance-service",
                                    "--config", str(config_file(tmp_path)), "--by", "alice")
    assert code == 0, err
    assert f"{CANARY} scaled 1 -> 0" in out and f"{STABLE} scaled 4 -> 5" in out
    assert f"{STABLE} 5/5 ready" in out and "verified" in out
    assert kube_sim.get("deployments", NS, CANARY)["spec"].get("replicas", 0) == 0


async def test_a_manual_dry_run_changes_nothing_and_says_what_it_would_do(
    kube_sim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    code, out, _ = await receiver(kubeconfig_path, "finance-service", "--dry-run",
                                  "--config", str(config_file(tmp_path)))
    assert code == 0
    assert "would scale finance-service-v2 1 -> 0" in out
    assert [r for r in kube_sim.requests if r.method != "GET"] == []


async def test_a_failed_manual_rollback_exits_non_zero_with_the_reason(
    kube_sim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    kube_sim.set_pod_behavior(NS, STABLE, "imagepull")
    code, out, _ = await receiver(kubeconfig_path, "finance-service", "--config",
                                  str(config_file(tmp_path, verification_timeout_seconds=1)))
    assert code == 1
    assert "FAILED" in out and "ImagePullBackOff" in out


async def test_a_manual_rollback_refuses_while_another_holds_the_target(
    kube_sim, kubeconfig_path: Path, tmp_path: Path, make_executor: MakeExecutor
) -> None:
    ex = make_executor("receiver-a")
    record = await ex.claim(decision(), make_config().targets[0])
    assert record is not None
    code, _, err = await receiver(kubeconfig_path, "finance-service",
                                  "--config", str(config_file(tmp_path)))
    assert code == 3 and "another rollback of finance-service is running" in err
    assert (await ex.start(record)).phase is Phase.SUCCEEDED


async def test_an_unknown_target_is_a_usage_error(kube_sim, kubeconfig_path: Path,
                                                  tmp_path: Path) -> None:
    code, _, err = await receiver(kubeconfig_path, "payments",
                                  "--config", str(config_file(tmp_path)))
    assert code == 2 and "unknown target 'payments'" in err


async def slack_conversation(fake_slack: FakeSlack) -> list[dict[str, Any]]:
    """The messages the fake Slack holds, read from outside as a person would."""
    async with aiohttp.ClientSession() as http, http.get(f"{fake_slack.url}/_sim/messages") as resp:
        assert resp.status == 200
        body = await resp.json()
    return [m for ch in body["channels"].values() for m in ch["messages"]]


def slack_config_file(tmp_path: Path, fake_slack: FakeSlack, **target: object) -> Path:
    body = make_config(target or None).model_dump(mode="json")
    body["slack"] = {**body["slack"], "mode": "bot", "api_url": fake_slack.api_url,
                     "default_channel": "#rollbacks"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


async def test_a_manual_rollback_posts_its_parent_timeline_and_outcome_to_slack_with_who_asked(
    kube_sim, kubeconfig_path: Path, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    code, _, err = await receiver(
        kubeconfig_path, "finance-service", "--config", str(slack_config_file(tmp_path, fake_slack)),
        "--by", "alice", env={"SLACK_BOT_TOKEN": fake_slack.token})
    assert code == 0, err
    [parent] = await slack_conversation(fake_slack)
    assert "requested by alice" in parent["text"]
    assert "rolled back" in parent["text"]  # the parent shows the outcome
    timeline = " ".join(r["text"] for r in parent["replies"])
    assert f"{CANARY} scaled 1 -&gt; 0" in timeline and f"{STABLE} scaled 4 -&gt; 5" in timeline


async def test_a_manual_rollback_of_a_muted_target_says_it_overrides_the_mute(
    kube_sim, kubeconfig_path: Path, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    path = slack_config_file(tmp_path, fake_slack,
                             mute={"by": "bob", "reason": "database migration"})
    code, out, err = await receiver(kubeconfig_path, "finance-service", "--config", str(path),
                                    "--by", "alice", env={"SLACK_BOT_TOKEN": fake_slack.token})
    assert code == 0, err
    assert "overrides the active mute of finance-service by bob" in out
    [parent] = await slack_conversation(fake_slack)
    assert "requested by alice" in parent["text"]
    assert "overrides the active mute of finance-service by bob" in parent["text"]
    assert "database migration" in parent["text"]
