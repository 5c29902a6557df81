"""`receiver promote TARGET`: the gate, one phase forward stable-last, and a rollback that wins.

The command runs as people run it (a subprocess against the simulator over HTTP); the
pods' Ready counts are observed from the simulator's own store as they change.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.domain.phases import phase_of
from receiver.domain.promotion import plan_promotion
from receiver.domain.rollback import Phase, RollbackRecord
from receiver.kube.lease import history_from_lease, record_from_lease
from receiver.rollback.promotion import measure, promote
from sim.kube import KubeSim
from sim.slack import FakeSlack
from tests.executor.conftest import CANARY, NS, STABLE, MakeExecutor, decision, make_config
from tests.executor.test_manual_cli import slack_config_file, slack_conversation

FULL = 5


async def receiver(kubeconfig: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "promote", *args, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def config_file(tmp_path: Path, **settings: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(make_config(**settings).model_dump(mode="json")))
    return path


def spec(sim: KubeSim, name: str) -> int:
    d = sim.get("deployments", NS, name)
    assert d is not None
    return int(d["spec"].get("replicas", 0))


def serving(sim: KubeSim) -> int:
    """Pods of either version that are Ready and not terminating: the service's capacity."""
    n = 0
    for pod in sim.list("pods", NS):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        conds = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
            n += 1
    return n


def changes(sim: KubeSim) -> list[Any]:
    return [r for r in sim.requests if r.method not in ("GET",)]


FORCE = ("--force", "--reason", "dashboards reviewed by hand", "--yes", "--by", "alice")


async def test_promotion_walks_week_1_to_4_without_capacity_ever_dropping_below_the_full_count(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    cfg = config_file(tmp_path)
    lowest = [serving(kube_sim)]
    assert lowest[0] == FULL
    unsubscribe = kube_sim.store.subscribe(lambda _c: lowest.append(serving(kube_sim)), storage="pods")
    try:
        for canary, stable in ((3, 2), (4, 1), (5, 0)):
            code, out, err = await receiver(kubeconfig_path, "finance-service", "--config", str(cfg), *FORCE)
            assert code == 0, out + err
            assert (spec(kube_sim, CANARY), spec(kube_sim, STABLE)) == (canary, stable)
            assert f"{CANARY} scaled" in out and "verified" in out
    finally:
        unsubscribe()
    assert min(lowest) >= FULL
    code, _, err = await receiver(kubeconfig_path, "finance-service", "--config", str(cfg), *FORCE)
    assert code == 2 and "nothing to promote to" in err


async def test_the_canary_is_verified_ready_before_the_stable_loses_a_pod(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    kube_sim.set_pod_behavior(NS, CANARY, "never-ready")
    cfg = config_file(tmp_path, verification_timeout_seconds=1)
    code, out, _ = await receiver(kubeconfig_path, "finance-service", "--config", str(cfg), *FORCE)
    assert code == 1
    assert "NOT done" in out and "verify-canary" in out
    assert spec(kube_sim, STABLE) == 4  # never scaled down


async def test_a_gate_that_is_not_passed_refuses_and_changes_nothing(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    code, out, err = await receiver(kubeconfig_path, "finance-service", "--config",
                                    str(config_file(tmp_path)), "--yes")
    assert code == 1
    assert "not measured (no prometheus configured)" in out
    assert "Not promoting finance-service" in err and "--force --reason" in err
    assert changes(kube_sim) == []


async def test_a_forced_promotion_records_the_reason_in_the_lease_annotations_and_events(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    code, out, err = await receiver(kubeconfig_path, "finance-service", "--config",
                                    str(config_file(tmp_path)), *FORCE)
    assert code == 0, out + err
    lease = kube_sim.get("leases", NS, "rollback-finance-service")
    last = history_from_lease(lease)[0]
    assert last.is_promotion and last.phase is Phase.SUCCEEDED
    assert "forced: dashboards reviewed by hand" in last.reason and last.requested_by == "alice"
    canary = kube_sim.get("deployments", NS, CANARY)
    assert canary is not None
    assert "forced: dashboards reviewed by hand" in canary["metadata"]["annotations"][
        "rollback-receiver.io/last-promotion"]
    reasons = {e.get("reason") for e in kube_sim.list("events", NS)}
    assert "Promoted" in reasons


async def test_a_dry_run_prints_the_plan_and_the_review_and_changes_nothing(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    code, out, _ = await receiver(kubeconfig_path, "finance-service", "--config",
                                  str(config_file(tmp_path)), "--dry-run")
    assert code == 1  # it would refuse: the gate is not measured
    assert f"scale {CANARY} 1 -> 3, verify its pods Ready, then scale {STABLE} 4 -> 2" in out
    assert "criterion" in out and "Dry run: would refuse" in out
    assert changes(kube_sim) == []


@pytest.mark.parametrize(("args", "said"), [
    (("nope", "--yes"), "unknown target 'nope'"),
    (("finance-service", "--to", "week-1", *FORCE), "not ahead"),
    (("finance-service", "--to", "week-9", *FORCE), "unknown phase 'week-9'"),
    (("finance-service", "--to", "Week 3", *FORCE), "not a phase name"),
    (("finance-service", "--force", "--yes"), "--force needs --reason"),
    (("finance-service", "--reason", "why", "--yes"), "--reason is the reason for --force"),
    (("finance-service", "--force", "--reason", "ok"), "stdin is not a terminal; pass --yes"),
])
async def test_bad_input_exits_2_says_why_and_changes_nothing(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    code, _, err = await receiver(kubeconfig_path, *args, "--config", str(config_file(tmp_path)))
    assert code == 2
    assert said in err
    assert changes(kube_sim) == []


async def test_a_rollback_during_a_promotion_takes_over_and_the_promotion_stops(
    kube_sim: KubeSim, make_executor: MakeExecutor
) -> None:
    config = make_config(verification_timeout_seconds=30)
    target = config.targets[0]
    kube_sim.set_pod_behavior(NS, CANARY, "never-ready")  # the promotion waits at verify-canary
    promoter = make_executor("promote-alice", config)
    rollbacks = make_executor("receiver-a", config)
    plan = plan_promotion(phase_of(1, FULL), 4, [p for p in _phases()])
    review = await measure(None, config.settings.promotion, target, plan.current)
    running = asyncio.create_task(promote(promoter, config, target, plan, review,
                                          requested_by="alice", force_reason="test"))
    await kube_sim.wait_for(lambda: spec(kube_sim, CANARY) == 3, timeout=10)

    claimed = await rollbacks.claim(decision(), target)
    assert claimed is not None, "a rollback's claim must pre-empt a promotion's Lease"
    rolled = await rollbacks.start(claimed)
    stopped = await asyncio.wait_for(running, 20)

    assert rolled.phase is Phase.SUCCEEDED
    assert stopped.phase is Phase.FAILED and stopped.error is not None
    assert stopped.error.startswith("stopped: a rollback took over")
    assert (spec(kube_sim, CANARY), spec(kube_sim, STABLE)) == (0, FULL)
    lease = kube_sim.get("leases", NS, "rollback-finance-service")
    current = record_from_lease(lease)
    assert current is not None and current.id == rolled.id and not current.is_promotion
    assert stopped.id in {r.id for r in history_from_lease(lease)}


def _phases() -> tuple[Any, ...]:
    from receiver.domain.phases import DEFAULT_PHASES

    return DEFAULT_PHASES


async def test_the_review_goes_to_slack_with_the_promotion_and_a_refusal_too(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    path = slack_config_file(tmp_path, fake_slack)
    env = {"SLACK_BOT_TOKEN": fake_slack.token}
    code, _, _ = await receiver(kubeconfig_path, "finance-service", "--config", str(path), "--yes", env=env)
    assert code == 1
    [refused] = await slack_conversation(fake_slack)
    assert "Promotion of finance-service not done" in refused["text"]
    assert "not measured" in " ".join(r["text"] for r in refused["replies"])

    code, _, err = await receiver(kubeconfig_path, "finance-service", "--config", str(path), *FORCE, env=env)
    assert code == 0, err
    promoted = [m for m in await slack_conversation(fake_slack) if m["ts"] != refused["ts"]]
    assert len(promoted) == 1
    assert "finance-service promoted" in promoted[0]["text"]
    timeline = " ".join(r["text"] for r in promoted[0]["replies"])
    assert "gate" in timeline and "forced: dashboards reviewed by hand" in promoted[0]["text"] + timeline
    assert f"{CANARY} scaled 1 -&gt; 3" in timeline and f"{STABLE} scaled 4 -&gt; 2" in timeline


async def confirm_on_a_terminal(kubeconfig: Path, answer: bytes, *args: str) -> tuple[int, str]:
    """Run promote with a pseudo-terminal as stdin, answering the question with ``answer``."""
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "promote", *args, env=env,
        stdin=follower, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    os.close(follower)
    assert proc.stdout is not None
    seen = b""
    while b"[y/N]" not in seen:
        chunk = await asyncio.wait_for(proc.stdout.read(4096), 30)
        assert chunk, seen.decode()
        seen += chunk
    os.write(leader, answer)
    rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    os.close(leader)
    return proc.returncode or 0, (seen + rest).decode()


async def test_on_a_terminal_the_promotion_asks_first_and_only_yes_moves_the_split(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    args = ("finance-service", "--config", str(config_file(tmp_path)), "--force", "--reason", "by hand")
    code, out = await confirm_on_a_terminal(kubeconfig_path, b"n\n", *args)
    assert code == 1 and "Promote finance-service to week 2? [y/N]" in out and "Not promoted" in out
    assert spec(kube_sim, CANARY) == 1
    code, out = await confirm_on_a_terminal(kubeconfig_path, b"y\n", *args)
    assert code == 0, out
    assert (spec(kube_sim, CANARY), spec(kube_sim, STABLE)) == (3, 2)


async def test_an_alert_pre_empts_a_promotion_running_in_the_same_receiver(
    kube_sim: KubeSim, make_executor: MakeExecutor
) -> None:
    config = make_config(verification_timeout_seconds=30)
    target = config.targets[0]
    kube_sim.set_pod_behavior(NS, CANARY, "never-ready")
    executor = make_executor("receiver-a", config)
    plan = plan_promotion(phase_of(1, FULL), 4, _phases())
    review = await measure(None, config.settings.promotion, target, plan.current)
    running = asyncio.create_task(promote(executor, config, target, plan, review,
                                          requested_by="alice", force_reason="test"))
    await kube_sim.wait_for(lambda: spec(kube_sim, CANARY) == 3, timeout=10)

    claimed = await executor.claim(decision(), target)
    assert claimed is not None
    rolled = await executor.start(claimed)
    stopped = await asyncio.wait_for(running, 20)
    assert rolled.phase is Phase.SUCCEEDED and stopped.phase is Phase.FAILED
    assert (spec(kube_sim, CANARY), spec(kube_sim, STABLE)) == (0, FULL)


def _lease_with(record: RollbackRecord, history: list[RollbackRecord]) -> dict[str, object]:
    from datetime import UTC, datetime

    from receiver.kube import micro_time
    from receiver.kube.lease import with_records

    lease = {"metadata": {"name": "rollback-t", "namespace": "n"},
             "spec": {"holderIdentity": "promote-alice", "leaseDurationSeconds": 60,
                      "renewTime": micro_time(datetime.now(UTC))}}
    return with_records(lease, record, history)


def test_a_running_promotion_is_no_running_rollback_so_an_alert_is_still_acted_on() -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    from receiver.kube.targets import state_of

    now = datetime.now(UTC)
    target = make_config().targets[0]
    base = RollbackRecord(id="p1", target=target.name, namespace="n", stable="s", canary="c",
                          replicas=5, phase=Phase.SCALING, started_at=now, trigger="manual",
                          reason="promotion", kind="promotion")
    done = [replace(base, id=f"p{i}", phase=Phase.SUCCEEDED, finished_at=now) for i in range(2, 6)]
    state = state_of(target, None, None, True, _lease_with(base, done), True, now)
    assert state.rollback_running is None
    assert state.recent_rollbacks == ()  # promotions do not count towards max_rollbacks_per_hour
    rollback = replace(base, id="r1", kind="rollback")
    assert state_of(target, None, None, True, _lease_with(rollback, []), True, now).rollback_running == "r1"
