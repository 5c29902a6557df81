"""The shipped RBAC (deploy/rbac.yaml) is enough, and a missing rule fails clearly."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.domain.rollback import Phase
from receiver.kube import new_api_client
from receiver.kube.targets import TargetWatcher
from sim.kube import AccessRule, KubeSim
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
    from receiver.rollback.executor import Executor

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
    from receiver.rollback.executor import Executor

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


# --- the Role is exactly what a whole run uses -------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def run_config(tmp_path: Path) -> Path:
    from receiver.domain.settings import load_config

    cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
    cfg["settings"]["lease_duration_seconds"] = 2
    cfg["slack"]["mode"] = "off"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def rule_allows(rule: dict[str, Any], r: Any) -> bool:
    """Whether one rule of the Role allows one recorded request (the simulator's RBAC)."""
    resource, _, sub = r.resource.partition("/")
    [access] = AccessRule.from_role({"kind": "Role", "metadata": {"namespace": NS}, "rules": [rule]})
    return access.allows(r.verb, r.group, resource, sub, r.namespace, r.name)


async def test_a_rollback_its_adoption_and_a_run_time_mute_use_every_rule_of_the_role_and_nothing_else(
    tmp_path: Path,
) -> None:
    """Run as `receiver serve` runs (start_receiver) under the shipped Role: replica a starts
    a rollback and stops mid-verify, replica b adopts and finishes it; then a mute is set
    and cleared through the shared state (its watch, first create, read-modify-write).
    Every request the simulator served must be allowed by a rule, and every rule (each
    verb of it) used."""
    import secrets
    from datetime import UTC, datetime, timedelta

    import aiohttp

    from receiver.cli.serve import start_receiver
    from receiver.domain.settings import load_config
    from receiver.kube import Kube
    from receiver.kube.lease import record_from_lease
    from receiver.kube.shared_state import STATE_NAME, SharedStateStore
    from tests.fixtures.receiver import firing_payload

    role = shipped_role()
    sim = fast_sim(tokens={"receiver-token": AccessRule.from_role(role, NS)})
    sim.load_manifests(KubeSim.default_manifests())
    await sim.start()
    stable = sim.get("deployments", NS, STABLE)
    assert stable is not None
    stable["metadata"].setdefault("annotations", {})["sim.rollback-receiver.io/ready-delay-seconds"] = "1"
    sim.apply(stable)
    await sim.wait_for(lambda: (sim.get("deployments", NS, STABLE) or {}).get("status", {}).get("readyReplicas") == 4)

    def finished() -> bool:
        lease = sim.get("leases", NS, "rollback-finance-service")
        record = record_from_lease(lease) if lease else None
        return record is not None and record.phase is Phase.SUCCEEDED

    kubeconfig = sim.write_kubeconfig(tmp_path / "kc", token="receiver-token")
    path = run_config(tmp_path)
    token = secrets.token_urlsafe(12)
    env = {"RECEIVER_WEBHOOK_TOKEN": token}
    receivers = []
    try:
        a = await start_receiver(path, kubeconfig=kubeconfig, identity="replica-a", env=env, watch_config=False)
        receivers.append(a)
        await a.watcher.wait_synced(5)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{a.url}/webhook", json=firing_payload(), headers={"Authorization": f"Bearer {token}"}) as resp,
        ):
            assert resp.status == 200, await resp.text()
        await sim.wait_for(lambda: (sim.get("deployments", NS, STABLE) or {})["spec"].get("replicas") == 5, 10)
        await a.stop(grace=0)  # mid-verify: the stable's new pod takes 1 s to be Ready
        assert not finished(), "replica a finished alone; nothing left to adopt"
        b = await start_receiver(path, kubeconfig=kubeconfig, identity="replica-b", env=env, watch_config=False)
        receivers.append(b)
        await b.watcher.wait_synced(5)

        await sim.wait_for(finished, 20)

        config = load_config(path)
        state_api = await new_api_client(kubeconfig)
        state = SharedStateStore(Kube(state_api, FAST_RETRY), lambda: config)
        try:
            await state.start()
            await state.wait_synced(5)
            until = datetime.now(UTC) + timedelta(hours=1)
            await state.set_mute("finance-service", "on-call", "rbac check", until)  # get 404, create
            assert (await state.clear_mute("finance-service", "on-call")) is not None  # get, update
            assert state.problem() is None
        finally:
            await state.stop()
            await state_api.close()
        assert sim.get("configmaps", NS, STATE_NAME) is not None
    finally:
        for rx in receivers:
            await rx.stop(grace=1)
        await sim.stop()

    served = [r for r in sim.requests if r.verb and r.user == "receiver-token"]
    assert [r for r in served if r.status == 403] == []
    rules = role["rules"]
    denied = {(r.verb, r.group, r.resource, r.name) for r in served if not any(rule_allows(x, r) for x in rules)}
    assert denied == set()
    unused = []
    for rule in rules:
        for verb in rule["verbs"]:
            one = {**rule, "verbs": [verb]}
            if not any(rule_allows(one, r) for r in served):
                unused.append((verb, rule["apiGroups"], rule["resources"], rule.get("resourceNames")))
    assert unused == [], (unused, sorted({(r.verb, r.group, r.resource, r.namespace, r.name) for r in served}))
