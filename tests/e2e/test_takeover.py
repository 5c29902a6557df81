"""Two receivers against one cluster: a rollback outlives the replica that started it.

Both run exactly as `receiver serve` builds them (start_receiver), against the simulator
over real HTTP. The surviving replica adopts the rollback from the Lease while it keeps
running (no restart needed), finishes it once, under the same rollback id.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from receiver.cli.serve import RunningReceiver, start_receiver
from receiver.domain.rollback import RollbackRecord
from receiver.domain.settings import load_config
from sim.kube import KubeSim
from tests.fixtures.receiver import firing_payload

ROOT = Path(__file__).resolve().parents[2]
NS, STABLE, CANARY = "finance", "finance-service-v1", "finance-service-v2"
DELAY = "sim.rollback-receiver.io/ready-delay-seconds"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def pair(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> AsyncIterator[tuple[RunningReceiver, RunningReceiver, str]]:
    cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
    cfg["settings"]["lease_duration_seconds"] = 2
    cfg["slack"]["mode"] = "off"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    token = secrets.token_urlsafe(12)
    env = {"RECEIVER_WEBHOOK_TOKEN": token}
    # the new stable pod takes a while to become Ready, so the rollback is caught mid-verify
    stable = kube_sim.get("deployments", NS, STABLE)
    assert stable is not None
    stable["metadata"].setdefault("annotations", {})[DELAY] = "1.5"
    kube_sim.apply(stable)
    a = await start_receiver(path, kubeconfig=kubeconfig_path, identity="replica-a", env=env, watch_config=False)
    b = await start_receiver(path, kubeconfig=kubeconfig_path, identity="replica-b", env=env, watch_config=False)
    await a.watcher.wait_synced(5)
    await b.watcher.wait_synced(5)
    try:
        yield a, b, token
    finally:
        await a.stop(grace=0)
        await b.stop(grace=1)


async def post(rx: RunningReceiver, token: str) -> dict:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{rx.url}/webhook", json=firing_payload(), headers={"Authorization": f"Bearer {token}"}) as resp,
    ):
        assert resp.status == 200
        return await resp.json()


def canary_patches(sim: KubeSim) -> int:
    return sum(1 for r in sim.requests if r.method == "PATCH" and r.path.endswith(f"/{CANARY}/scale"))


def running_task(rollback_id: str) -> asyncio.Task[RollbackRecord] | None:
    """The live task running this rollback in this process (either replica)."""
    name = f"rollback {rollback_id}"
    return next((t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()), None)


async def wait_verify_started(sim: KubeSim, rx: RunningReceiver) -> str:
    def verifying() -> bool:
        records = rx.executor.running_records()
        return bool(records) and any(s.name == "scale-stable" for s in records[0].steps)

    await sim.wait_for(verifying, timeout=5)  # woken by each API request the rollback makes
    return rx.executor.running_records()[0].id


async def adopted_and_finished(sim: KubeSim, rx: RunningReceiver, rollback_id: str) -> RollbackRecord:
    await sim.wait_for(
        lambda: (
            any(r.id == rollback_id for r in rx.executor.running_records()) and running_task(rollback_id) is not None
        ),
        timeout=10,
    )
    task = running_task(rollback_id)
    assert task is not None
    return await asyncio.wait_for(task, 15)


async def test_a_replica_shut_down_mid_rollback_hands_it_to_the_other_which_finishes_it_once(
    pair: tuple[RunningReceiver, RunningReceiver, str], kube_sim: KubeSim
) -> None:
    a, b, token = pair
    answer = await post(a, token)
    rollback_id = answer["rollbacks"][0]
    assert await wait_verify_started(kube_sim, a) == rollback_id
    await a.stop(grace=0)  # SIGTERM during verification: the Lease is released unfinished
    finished = await adopted_and_finished(kube_sim, b, rollback_id)
    assert finished.phase.value == "succeeded" and finished.id == rollback_id
    assert any(s.name == "resume" and "replica-b" in s.message for s in finished.steps)
    assert (kube_sim.get("deployments", NS, STABLE) or {})["status"]["readyReplicas"] == 5
    assert canary_patches(kube_sim) == 1


async def test_a_replica_that_dies_mid_rollback_is_replaced_by_the_other_once_its_lease_expires(
    pair: tuple[RunningReceiver, RunningReceiver, str], kube_sim: KubeSim
) -> None:
    a, b, token = pair
    rollback_id = (await post(a, token))["rollbacks"][0]
    await wait_verify_started(kube_sim, a)
    # a crash: replica a's rollback and its adopter stop at once and nothing is released
    assert a.adopter is not None
    a.adopter.cancel()
    for task in asyncio.all_tasks():
        if task.get_name() == f"rollback {rollback_id}":
            task.cancel()
    # a repeat delivery to the survivor while the dead holder's Lease is still valid changes nothing
    assert (await post(b, token))["decisions"][0]["decision"] == "in_progress"
    finished = await adopted_and_finished(kube_sim, b, rollback_id)
    assert finished.phase.value == "succeeded"
    assert any(s.name == "resume" and "replica-b" in s.message for s in finished.steps)
    assert canary_patches(kube_sim) == 1
