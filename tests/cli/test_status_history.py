"""`receiver status` and `receiver history` against the simulator, as the real command.

Each test runs the `receiver` process against the simulator's API over HTTP, with no
receiver serving: the views are read from the Deployments and the targets' Leases.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client import ApiClient

from receiver.domain.rollback import Phase, RollbackRecord, Step
from receiver.domain.settings import Config
from receiver.kube import Kube, micro_time
from receiver.kube.lease import (
    ANN_HISTORY,
    ANN_RECORD,
    HISTORY_KEEP,
    LABEL_MANAGED_BY,
    LABEL_TARGET,
    MANAGED_BY,
    encode_history,
    encode_record,
)
from receiver.rollback.executor import Executor, new_record
from sim.kube import KubeSim
from tests.cli.helpers import free_port, kubeconfig_for, receiver
from tests.executor.conftest import CANARY, FAST_RETRY, NS, STABLE, decision, make_config

TARGET = "finance-service"


def write_config(tmp_path: Path, config: Config) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    return path


@pytest.fixture
def cluster(kubeconfig_path: Path, tmp_path: Path) -> list[str]:
    """--config and --kubeconfig for the seeded finance-service (week 1: v2 1, v1 4)."""
    return ["--config", str(write_config(tmp_path, make_config())), "--kubeconfig", str(kubeconfig_path)]


def record(started: datetime, phase: Phase = Phase.SUCCEEDED, reason: str = "error-rate: 7.2 % > 5 %",
           steps: tuple[str, ...] = ("preflight", "scale-canary")) -> RollbackRecord:
    r = new_record(decision(reason), make_config().targets[0], make_config(), started)
    for i, name in enumerate(steps):
        r = r.with_step(Step(name=name, message=f"{name} done", at=started + timedelta(seconds=i)))
    finished = started + timedelta(seconds=30) if phase.finished else None
    return replace(r, phase=phase, finished_at=finished)


async def put_lease(api: ApiClient, current: RollbackRecord | None = None,
                    history: list[RollbackRecord] | None = None, holder: str = "receiver-a") -> None:
    """The target's Lease as a receiver writes it: a record and/or the kept history."""
    annotations: dict[str, str] = {}
    if current is not None:
        annotations[ANN_RECORD] = encode_record(current)
    if history:
        annotations[ANN_HISTORY] = encode_history(history)
    now = micro_time()
    body: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": f"rollback-{TARGET}", "namespace": NS,
                     "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_TARGET: TARGET},
                     "annotations": annotations},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "acquireTime": now, "renewTime": now},
    }
    await Kube(api).create_lease(NS, body)


def rows(text: str) -> dict[str, str]:
    """The table's lines by target name (first word)."""
    return {line.split()[0]: line for line in text.strip().splitlines()[1:]}


def header(text: str) -> list[str]:
    return text.strip().splitlines()[0].split()


# -- status ----------------------------------------------------------------------------


@pytest.mark.parametrize(("canary", "week"), [(1, "week 1"), (3, "week 2"), (4, "week 3"), (5, "week 4")])
async def test_status_names_the_week_of_the_live_split(
    kube_sim: KubeSim, cluster: list[str], canary: int, week: str,
) -> None:
    kube_sim.scale_as(NS, CANARY, canary)
    kube_sim.scale_as(NS, STABLE, 5 - canary)
    r = await receiver("status", *cluster)
    assert r.code == 0, r.err
    assert header(r.out) == ["TARGET", "PHASE", "CANARY", "STABLE", "ROLLBACK", "LAST", "BREAKER", "MUTE"]
    line = rows(r.out)[TARGET]
    assert f"{week} ({canary}/5)" in line
    assert f"/{canary} " in line and f"/{5 - canary} " in line  # READY/SPEC of each Deployment
    assert line.split()[-1] == "-"  # not muted


async def test_status_of_a_seeded_target_shows_ready_pods_and_a_closed_breaker(
    kube_sim: KubeSim, cluster: list[str],
) -> None:
    r = await receiver("status", TARGET, *cluster)
    assert r.code == 0, r.err
    cells = rows(r.out)[TARGET].split()
    assert cells[:6] == [TARGET, "week", "1", "(1/5)", "1/1", "4/4"]
    assert cells[6:9] == ["-", "-", "closed"]


async def test_status_during_a_rollback_shows_it_running_with_its_current_step(
    kube_sim: KubeSim, kube_api: ApiClient, cluster: list[str],
) -> None:
    running = record(datetime.now(UTC), Phase.SCALING, steps=("preflight", "order", "scale-canary"))
    await put_lease(kube_api, current=running)
    r = await receiver("status", *cluster, "-o", "json")
    assert r.code == 0, r.err
    rb = json.loads(r.out)["targets"][0]["rollback"]
    assert (rb["id"], rb["phase"], rb["step"], rb["holder"]) == (running.id, "scaling", "scale-canary", "receiver-a")
    table = await receiver("status", *cluster)
    assert "scaling (after scale-canary)" in rows(table.out)[TARGET]


async def test_a_target_muted_in_config_shows_who_why_until_and_that_the_config_holds_it(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path,
) -> None:
    until = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    config = make_config(target={"mute": {"by": "alice", "reason": "load test", "until": until.isoformat()}})
    args = ["--config", str(write_config(tmp_path, config)), "--kubeconfig", str(kubeconfig_path)]
    r = await receiver("status", *args)
    assert r.code == 0, r.err
    assert rows(r.out)[TARGET].endswith(f"config: alice until {until:%Y-%m-%d %H:%M}Z: load test")
    j = await receiver("status", *args, "-o", "json")
    mute = json.loads(j.out)["targets"][0]["mute"]
    assert mute == {"scope": "target", "source": "config", "by": "alice", "reason": "load test",
                    "until": until.isoformat().replace("+00:00", "Z")}


async def test_status_json_has_the_documented_shape(kube_sim: KubeSim, cluster: list[str]) -> None:
    r = await receiver("status", *cluster, "-o", "json")
    assert r.code == 0, r.err
    view = json.loads(r.out)
    assert set(view) == {"generated_at", "targets"}
    t = view["targets"][0]
    assert set(t) == {"name", "namespace", "phase", "canary", "stable", "mute", "rollback", "last", "breaker",
                      "state_problem"}
    assert t["phase"] == {"key": "week-1", "text": "week 1", "canary_replicas": 1, "full_count": 5}
    assert t["canary"] == {"name": CANARY, "exists": True, "replicas": 1, "ready": 1}
    assert t["stable"] == {"name": STABLE, "exists": True, "replicas": 4, "ready": 4}
    assert (t["mute"], t["rollback"], t["last"]) == (None, None, None)
    assert t["breaker"] == {"state": "closed", "opened_at": None, "targets": [], "reason": ""}


async def test_status_yaml_is_the_same_view_as_json(kube_sim: KubeSim, cluster: list[str]) -> None:
    r = await receiver("status", *cluster, "-o", "yaml")
    assert r.code == 0, r.err
    view = yaml.safe_load(r.out)
    assert view["targets"][0]["phase"]["key"] == "week-1"
    assert view["targets"][0]["breaker"]["state"] == "closed"


async def test_status_watch_prints_a_new_line_when_the_canary_is_scaled(
    kube_sim: KubeSim, cluster: list[str],
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "status", "--watch", *cluster,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )
    assert proc.stdout is not None
    try:
        async def line() -> str:
            return (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()  # type: ignore[union-attr]

        assert (await line()).startswith("TARGET")
        assert "week 1 (1/5)" in await line()
        kube_sim.scale_as(NS, CANARY, 3)
        seen = [await line()]
        while "week 2 (3/5)" not in seen[-1]:
            seen.append(await line())
        assert seen[-1].split()[0] == TARGET
    finally:
        proc.terminate()
        await proc.wait()


async def test_status_watch_as_json_prints_one_object_per_change(kube_sim: KubeSim, cluster: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "status", "-w", "-o", "json", *cluster,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )
    assert proc.stdout is not None
    try:
        async def target() -> dict[str, Any]:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
            return dict(json.loads(line))

        assert (await target())["phase"]["key"] == "week-1"
        kube_sim.scale_as(NS, CANARY, 4)
        while (seen := await target())["phase"]["key"] != "week-3":
            assert seen["name"] == TARGET
    finally:
        proc.terminate()
        await proc.wait()


async def test_a_missing_canary_is_shown_as_missing_with_no_phase(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path,
) -> None:
    config = make_config(target={"canary": "finance-service-v3"})
    args = ["--config", str(write_config(tmp_path, config)), "--kubeconfig", str(kubeconfig_path)]
    r = await receiver("status", *args)
    assert r.code == 0, r.err
    cells = rows(r.out)[TARGET].split()
    assert cells[1:4] == ["unknown", "missing", "4/4"]
    t = json.loads((await receiver("status", *args, "-o", "json")).out)["targets"][0]
    assert (t["phase"], t["canary"]) == (None, {"name": "finance-service-v3", "exists": False,
                                                "replicas": None, "ready": None})


async def test_status_against_an_unreachable_cluster_exits_1_in_kubectls_words(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{free_port()}"
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", server)
    r = await receiver("status", "--config", str(write_config(tmp_path, make_config())),
                       "--kubeconfig", str(kubeconfig), "--request-timeout", "1s")
    assert r.code == 1
    assert r.err.strip().splitlines()[-1].startswith(f"Unable to connect to the server {server}")


# -- history ---------------------------------------------------------------------------


async def test_history_after_a_restart_is_read_from_the_lease(
    kube_sim: KubeSim, kube_api: ApiClient, cluster: list[str],
) -> None:
    config = make_config()
    target = config.targets[0]
    executor = Executor(kube_api, lambda: config, "receiver-a", retry=FAST_RETRY)
    try:
        claimed = await executor.claim(decision("error-rate: 7.2 % > 5 %"), target)
        assert claimed is not None
        done = await executor.start(claimed)
    finally:
        await executor.close(timeout=1)  # the receiver is gone: only the Lease remains
    assert done.phase is Phase.SUCCEEDED
    r = await receiver("history", *cluster, "-o", "json")
    assert r.code == 0, r.err
    (entry,) = json.loads(r.out)["rollbacks"]
    assert (entry["id"], entry["outcome"], entry["trigger"]) == (done.id, "succeeded", "alert")
    assert entry["reason"] == "error-rate: 7.2 % > 5 %"
    assert entry["recovery"] == {"outcome": "not measured"}
    assert entry["duration_seconds"] == pytest.approx(done.duration_seconds)
    assert [s["name"] for s in entry["steps"]][:3] == ["preflight", "order", "scale-canary"]
    text = await receiver("history", TARGET, *cluster)
    assert text.out.splitlines()[0].startswith(f"{done.started_at:%Y-%m-%d %H:%M:%S}Z  {TARGET}  succeeded in ")
    assert "    reason:   error-rate: 7.2 % > 5 %" in text.out
    assert "    recovery: not measured" in text.out
    status = await receiver("status", *cluster)
    assert "succeeded" in rows(status.out)[TARGET].split()[7:9]


async def test_history_since_leaves_out_older_rollbacks_and_says_how_many_are_kept(
    kube_sim: KubeSim, kube_api: ApiClient, cluster: list[str],
) -> None:
    now = datetime.now(UTC)
    old, recent = record(now - timedelta(days=10)), record(now - timedelta(days=1))
    await put_lease(kube_api, history=[recent, old])
    week = json.loads((await receiver("history", *cluster, "-o", "json")).out)
    assert [e["id"] for e in week["rollbacks"]] == [recent.id]
    assert week["kept_per_target"] == HISTORY_KEEP
    month = json.loads((await receiver("history", *cluster, "--since", "30d", "-o", "json")).out)
    assert [e["id"] for e in month["rollbacks"]] == [recent.id, old.id]


async def test_history_with_nothing_recorded_says_so(kube_sim: KubeSim, cluster: list[str]) -> None:
    r = await receiver("history", *cluster)
    assert (r.code, r.out.strip().startswith("No rollbacks since ")) == (0, True)


# -- bad input: a clear error, exit 2 -------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (("status", "nope"), "error: unknown target 'nope'; configured: finance-service"),
    (("history", "nope"), "error: unknown target 'nope'; configured: finance-service"),
    (("history", "--since", "yesterday"), "error: cannot read since 'yesterday'"),
    (("history", "--since", "2999-01-01T00:00:00Z"), "error: since '2999-01-01T00:00:00Z' is in the future"),
    (("history", "--since", "2026-01-01T00:00:00"), "error: cannot read since"),
    (("status", "-o", "xml"), "invalid choice: 'xml'"),
    (("history", "-o", "yaml"), "invalid choice: 'yaml'"),
    (("status", "--request-timeout", "soon"), "--request-timeout"),
])
async def test_bad_input_is_a_clear_error_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str,
) -> None:
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", f"https://127.0.0.1:{free_port()}")
    r = await receiver(*args, "--config", str(write_config(tmp_path, make_config())),
                       "--kubeconfig", str(kubeconfig))
    assert r.code == 2, (r.out, r.err)
    assert message in r.err
    assert "Traceback" not in r.err


def test_the_readme_says_how_many_rollbacks_each_lease_keeps() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"last {HISTORY_KEEP} finished rollbacks" in readme
    assert f"an {HISTORY_KEEP + 1}th drops the oldest" in readme


async def test_status_shows_a_run_time_mute_and_an_open_breaker_from_the_cluster(
    kube_sim: KubeSim, kube_api: ApiClient, cluster: list[str],
) -> None:
    from receiver.kube.shared_state import SharedStateStore

    config = make_config()
    store = SharedStateStore(Kube(kube_api, FAST_RETRY), lambda: config)
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    await store.set_mute(TARGET, "bob", "db migration", until)
    await store.open_breaker([TARGET], "4 targets within 5 min")
    r = await receiver("status", *cluster)
    assert r.code == 0, r.err
    line = rows(r.out)[TARGET]
    assert " open " in line and line.endswith(f"runtime: bob until {until:%Y-%m-%d %H:%M}Z: db migration")
    t = json.loads((await receiver("status", *cluster, "-o", "json")).out)["targets"][0]
    assert t["mute"] == {"scope": "target", "source": "runtime", "by": "bob", "reason": "db migration",
                         "until": until.isoformat().replace("+00:00", "Z")}
    assert t["breaker"]["state"] == "open" and TARGET in t["breaker"]["targets"]
