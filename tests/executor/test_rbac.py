"""The shipped RBAC (deploy/rbac.yaml) is enough, and a missing rule fails clearly."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.core.rollback import Phase
from receiver.kube import new_api_client
from receiver.sim.kube import AccessRule, KubeSim
from receiver.target_watcher import TargetWatcher
from tests.executor.conftest import CANARY, FAST_RETRY, NS, STABLE, decision, make_config
from tests.fixtures.kube import fast_sim

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"


def shipped_role() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == NS]
    assert len(roles) == 1
    return roles[0]


def without(role: dict[str, Any], resource: str, verb: str) -> dict[str, Any]:
    """The role with ``verb`` on ``resource`` taken out of every rule."""
    out = copy.deepcopy(role)
    for rule in out["rules"]:
        if resource in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return out


async def enforcing(role: dict[str, Any], tmp_path: Path) -> AsyncIterator[tuple[KubeSim, Any]]:
    sim = fast_sim(tokens={"receiver-token": AccessRule.from_role(role, NS)})
    sim.load_manifests(KubeSim.default_manifests())
    await sim.start()
    await sim.wait_for(lambda: (sim.get("deployments", NS, STABLE) or {})
                       .get("status", {}).get("readyReplicas") == 4, 5)
    api = await new_api_client(sim.write_kubeconfig(tmp_path / "kc", token="receiver-token"))
    try:
        yield sim, api
    finally:
        await api.close()
        await sim.stop()


@pytest.fixture
async def shipped(tmp_path: Path) -> AsyncIterator[tuple[KubeSim, Any]]:
    async for pair in enforcing(shipped_role(), tmp_path):
        yield pair


@pytest.fixture
async def no_scale(tmp_path: Path) -> AsyncIterator[tuple[KubeSim, Any]]:
    async for pair in enforcing(without(shipped_role(), "deployments/scale", "patch"), tmp_path):
        yield pair


async def test_the_shipped_role_is_enough_for_a_whole_rollback_and_its_records(
    shipped: tuple[KubeSim, Any],
) -> None:
    from receiver.executor import Executor

    sim, api = shipped
    cfg = make_config()
    watcher = TargetWatcher(api, lambda: cfg)
    await watcher.start()
    ex = Executor(api, lambda: cfg, "receiver-a", retry=FAST_RETRY)
    try:
        await watcher.wait_synced(5)
        record = await ex.claim(decision(), cfg.targets[0])
        assert record is not None
        final = await ex.start(record)
        assert final.phase is Phase.SUCCEEDED, final.error
        assert not [s for s in final.steps if s.warning or not s.ok], final.steps
        assert [r.id for r in await ex.list_rollbacks()] == [final.id]
        assert watcher.errors() == []
    finally:
        await ex.close(1)
        await watcher.stop()
    assert sim.get("deployments", NS, CANARY)["spec"].get("replicas", 0) == 0
    assert [r for r in sim.requests if r.status == 403] == []


async def test_without_patch_on_the_scale_subresource_the_rollback_fails_naming_it(
    no_scale: tuple[KubeSim, Any],
) -> None:
    from receiver.executor import Executor

    sim, api = no_scale
    cfg = make_config()
    ex = Executor(api, lambda: cfg, "receiver-a", retry=FAST_RETRY)
    try:
        final = await ex.start(await ex.claim(decision(), cfg.targets[0]))  # type: ignore[arg-type]
    finally:
        await ex.close(1)
    assert final.phase is Phase.FAILED
    assert 'cannot patch resource "deployments/scale"' in (final.error or "")
    assert sim.get("deployments", NS, CANARY)["spec"]["replicas"] == 1
