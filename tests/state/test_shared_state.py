"""Run-time mutes and the breaker, kept in the cluster and shared by every replica."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.domain.settings import Config, parse_config
from receiver.domain.shared_state import GLOBAL, mute_for
from receiver.kube import Kube, KubeError, RetryPolicy, new_api_client
from receiver.kube.shared_state import STATE_NAME, SharedStateStore
from sim.kube import AccessRule, KubeSim

NS = "finance"
TARGET = "finance-service"
FAST = RetryPolicy(base_seconds=0.005, cap_seconds=0.05, give_up_after_seconds=5)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def make_config(**settings: Any) -> Config:
    return parse_config(yaml.safe_dump({
        "settings": settings,
        "rules": [{"name": "error-rate", "matchers": ['alertname="HighErrorRate"'], "threshold": 0.05}],
        "targets": [
            {"name": TARGET, "namespace": NS, "matchers": ['service="finance-service"'],
             "stable": "finance-service-v1", "canary": "finance-service-v2", "replicas": 5},
            {"name": "ledger", "namespace": "ledger", "matchers": ['service="ledger"'],
             "stable": "ledger-v1", "canary": "ledger-v2", "replicas": 2},
        ],
    }))


@pytest.fixture
async def replica(kube_sim: KubeSim, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """replica() -> a started SharedStateStore with its own API client, as one receiver pod."""
    made: list[tuple[SharedStateStore, Any]] = []
    config = make_config()

    async def make(clock: Callable[[], datetime] | None = None, token: str | None = None) -> SharedStateStore:
        api = await new_api_client(kube_sim.write_kubeconfig(tmp_path / f"kc{len(made)}", token=token))
        store = SharedStateStore(Kube(api, FAST), lambda: config, clock=clock or FakeClock())
        made.append((store, api))
        await store.start()
        await store.wait_synced(5)
        return store

    yield make
    for store, api in made:
        await store.stop()
        await api.close()


def configmap_writes(sim: KubeSim) -> list[str]:
    return [r.verb for r in sim.requests if r.resource == "configmaps" and r.verb in ("create", "update", "patch")]


async def test_a_mute_set_through_one_replica_is_seen_by_another_within_a_second(
    replica: Callable[..., Any], kube_sim: KubeSim
) -> None:
    clock = FakeClock()
    a, b = await replica(clock), await replica(clock)
    assert b.current().mutes == ()
    mute = await a.set_mute(TARGET, "alice", "db migration", clock.now + timedelta(hours=2))
    seen = await b.wait_for(lambda s: s.mute(TARGET) is not None, timeout=1)
    assert seen.mute(TARGET) == mute
    assert mute_for(seen.mutes, TARGET, clock()) == mute
    assert mute_for(seen.mutes, "ledger", clock()) is None  # a target's mute is not global
    assert a.current().mute(TARGET) == mute  # the writer's own view has it on return
    stored = kube_sim.get("configmaps", NS, STATE_NAME)
    assert stored is not None and '"by":"alice"' in stored["data"]["mutes"]

    await b.set_mute(None, "bob", "freeze", clock.now + timedelta(hours=1))
    seen = await a.wait_for(lambda s: s.mute(None) is not None, timeout=1)
    assert mute_for(seen.mutes, "ledger", clock()).by == "bob"  # type: ignore[union-attr]
    assert mute_for(seen.mutes, TARGET, clock()).by == "alice"  # type: ignore[union-attr]  # its own first

    assert (await b.clear_mute(TARGET, "carol")) == mute
    seen = await a.wait_for(lambda s: s.mute(TARGET) is None, timeout=1)
    assert [m.target for m in seen.mutes] == [GLOBAL]
    assert await b.clear_mute(TARGET, "carol") is None  # nothing left to clear: nothing written


async def test_a_mute_expires_by_itself_and_is_reported_once_as_expired(replica: Callable[..., Any]) -> None:
    clock = FakeClock()
    store = await replica(clock)
    start = clock()
    mute = await store.set_mute(TARGET, "alice", "maintenance", start + timedelta(minutes=30))
    assert mute_for(store.current().mutes, TARGET, clock()) == mute
    clock.advance(minutes=29, seconds=59)
    assert mute_for(store.current().mutes, TARGET, clock()) == mute
    assert store.expired_since(start) == ()
    clock.advance(seconds=1)
    assert mute_for(store.current().mutes, TARGET, clock()) is None
    assert store.expired_since(start) == (mute,)
    assert store.expired_since(clock()) == ()  # announced already: not again


async def test_two_replicas_writing_at_once_keep_both_changes(replica: Callable[..., Any], kube_sim: KubeSim) -> None:
    """Both read the same version (reads and writes slowed so they overlap); the loser's
    409 (AlreadyExists, then Conflict) makes it read again and write on top."""
    import asyncio

    clock = FakeClock()
    a, b = await replica(clock), await replica(clock)
    until = clock.now + timedelta(hours=1)
    kube_sim.faults.latency(0.2, verb="get", resource="configmaps")
    kube_sim.faults.latency(0.2, verb="create", resource="configmaps")
    kube_sim.faults.latency(0.2, verb="update", resource="configmaps")
    await asyncio.gather(a.set_mute(TARGET, "alice", "first", until), b.set_mute("ledger", "bob", "second", until))
    await asyncio.gather(a.set_mute(None, "alice", "third", until), b.open_breaker([TARGET], "3 rollbacks in 5 min"))
    statuses = [(r.verb, r.status) for r in kube_sim.requests if r.resource == "configmaps"]
    assert ("create", 409) in statuses and ("update", 409) in statuses, statuses
    final = await a.read()
    assert {m.target: m.reason for m in final.mutes} == {GLOBAL: "third", TARGET: "first", "ledger": "second"}
    assert final.breaker.is_open and final.breaker.targets == (TARGET,)


async def test_a_corrupt_state_config_map_is_reported_not_a_crash_and_the_next_write_repairs_it(
    replica: Callable[..., Any], kube_sim: KubeSim
) -> None:
    clock = FakeClock()
    store = await replica(clock)
    kube_sim.apply({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": STATE_NAME, "namespace": NS},
                    "data": {"mutes": "{not json", "breaker": '{"state": "open", "targets": ["finance-service"]}'}})
    state = await store.wait_for(lambda s: bool(s.problems), timeout=5)
    assert state.mutes == ()  # read as empty: the receiver keeps protecting the service
    assert state.breaker.is_open  # the readable document still counts
    assert not store.is_current
    assert f"ConfigMap {NS}/{STATE_NAME} is unreadable: mutes: not JSON" in (store.problem() or "")
    await store.set_mute(TARGET, "alice", "repair", clock.now + timedelta(hours=1))
    state = store.current()
    assert (state.problems, [m.reason for m in state.mutes], state.breaker.is_open) == ((), ["repair"], True)
    assert store.is_current


async def test_a_field_of_a_mute_that_is_wrong_is_named(replica: Callable[..., Any], kube_sim: KubeSim) -> None:
    store = await replica()
    kube_sim.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": STATE_NAME, "namespace": NS},
                    "data": {"mutes": '{"finance-service": {"by": "a", "reason": "r", "until": "soon",'
                                      ' "created_at": "2026-12-01T03:00:00Z"}}'}})
    state = await store.wait_for(lambda s: bool(s.problems), timeout=5)
    assert state.problems == ("mutes[finance-service].until: not an RFC 3339 time: 'soon'",)


async def test_the_state_survives_a_restart(replica: Callable[..., Any]) -> None:
    clock = FakeClock()
    first = await replica(clock)
    mute = await first.set_mute(None, "alice", "quarter close", clock.now + timedelta(days=1))
    breaker = await first.open_breaker([TARGET, "ledger"], "2 targets rolled back in 10 min")
    await first.stop()
    again = await replica(clock)  # a new process: lists the ConfigMap, no memory carried over
    assert again.current().mute(None) == mute
    assert again.current().breaker == breaker
    closed = await again.close_breaker("bob")
    assert (closed.is_open, closed.closed_by, closed.targets) == (False, "bob", (TARGET, "ledger"))
    assert (await again.read()).breaker == closed


async def test_opening_an_open_breaker_adds_targets_and_keeps_when_it_opened(replica: Callable[..., Any]) -> None:
    clock = FakeClock()
    store = await replica(clock)
    first = await store.open_breaker([TARGET], "burst")
    clock.advance(minutes=5)
    again = await store.open_breaker(["ledger"], "more")
    assert (again.opened_at, again.targets, again.reason) == (first.opened_at, (TARGET, "ledger"), "burst")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, now: s.set_mute(TARGET, "alice", "late", now - timedelta(seconds=1)), "is not in the future"),
        (lambda s, now: s.set_mute("nope", "alice", "x", now + timedelta(hours=1)),
         "unknown target 'nope'; configured targets: finance-service, ledger"),
        (lambda s, now: s.set_mute(TARGET, " ", "x", now + timedelta(hours=1)), "who mutes must be given"),
        (lambda s, now: s.set_mute(TARGET, "a", "", now + timedelta(hours=1)), "a reason must be given"),
        (lambda s, now: s.set_mute(TARGET, "a", "x", datetime(2030, 1, 1)), "must carry a time zone"),
        (lambda s, now: s.clear_mute("nope", "alice"), "unknown target 'nope'"),
        (lambda s, now: s.open_breaker(["nope"], "x"), "unknown target(s) nope"),
        (lambda s, now: s.close_breaker(""), "who closes the breaker must be given"),
    ],
)
async def test_bad_input_is_refused_with_a_clear_message_before_anything_is_written(
    replica: Callable[..., Any], kube_sim: KubeSim, call: Callable[..., Any], message: str
) -> None:
    clock = FakeClock()
    store = await replica(clock)
    kube_sim.requests.clear()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await call(store, clock())
    assert [r for r in kube_sim.requests if r.resource == "configmaps" and r.verb != "watch"] == []
    assert kube_sim.get("configmaps", NS, STATE_NAME) is None


async def test_without_permission_the_view_says_so_instead_of_showing_no_mutes(
    kube_sim: KubeSim, tmp_path: Path
) -> None:
    kube_sim.tokens = {"no-cm": [AccessRule(["get", "list", "watch"], ["apps"], ["deployments"], [NS])]}
    api = await new_api_client(kube_sim.write_kubeconfig(tmp_path / "kc", token="no-cm"))
    store = SharedStateStore(Kube(api, FAST), make_config, clock=FakeClock())
    try:
        await store.start()
        with pytest.raises(KubeError) as e:
            await store.wait_synced(5)
        assert e.value.status == 403
        assert not store.is_current
        assert 'cannot list resource "configmaps"' in (store.problem() or "")
    finally:
        await store.stop()
        await api.close()


async def test_the_state_namespace_defaults_to_the_lease_namespace_then_the_first_target() -> None:
    assert make_config().state_namespace == NS
    assert make_config(lease_namespace="ops").state_namespace == "ops"
    assert make_config(lease_namespace="ops", state_namespace="state").state_namespace == "state"


def test_a_state_namespace_that_is_no_namespace_name_is_refused() -> None:
    from receiver.domain.settings import ConfigError

    with pytest.raises((ConfigError, ValueError)):
        make_config(state_namespace="Not_A_Namespace")
