"""`receiver rollback TARGET --config PATH`: live progress, exit 0 only when verified."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import yaml

from receiver.core.rollback import Phase
from tests.executor.conftest import CANARY, NS, STABLE, MakeExecutor, decision, make_config


async def receiver(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
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
