"""decide() with the state every replica shares: run-time mutes and the blast-radius breaker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from receiver.domain.alerts import WebhookPayload, parse_payload
from receiver.domain.decisions import DecisionKind, MuteScope, MuteSource, TargetState, decide
from receiver.domain.settings import Config, parse_config
from receiver.domain.shared_state import GLOBAL, BreakerState, RuntimeMute, SharedState
from tests.fixtures.receiver import firing_payload

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
NAMES = ("svc-a", "svc-b", "svc-c", "svc-d")


def config(**settings: Any) -> Config:
    return parse_config(yaml.safe_dump({
        "settings": settings,
        "rules": [{"name": "error-rate", "matchers": ['alertname="HighErrorRate"'], "threshold": 0.05}],
        "targets": [{"name": n, "namespace": "finance", "matchers": [f'service="{n}"'], "stable": f"{n}-v1",
                     "canary": f"{n}-v2", "replicas": 5} for n in NAMES],
    }))


def alert_for(name: str) -> WebhookPayload:
    return parse_payload(json.dumps(firing_payload(service=name, fingerprint=f"fp-{name}")))


def runtime(target: str, by: str = "alice", minutes: float = 60) -> RuntimeMute:
    return RuntimeMute(target=target, by=by, reason="db migration", until=NOW + timedelta(minutes=minutes),
                       created_at=NOW - timedelta(minutes=1))


def started(minutes_ago: float) -> TargetState:
    return TargetState(canary_replicas=1, stable_replicas=4, stable_exists=True, canary_exists=True,
                       recent_alert_starts=(NOW - timedelta(minutes=minutes_ago),))


def test_a_run_time_mute_mutes_its_target_and_says_it_was_set_at_run_time() -> None:
    [d] = decide(alert_for("svc-a"), config(), {}, NOW, SharedState(mutes=(runtime("svc-a"),)))
    assert d.kind is DecisionKind.MUTED
    assert d.mute is not None and (d.mute.source, d.mute.scope, d.mute.by) == (
        MuteSource.RUNTIME, MuteScope.TARGET, "alice")


def test_an_expired_run_time_mute_no_longer_mutes() -> None:
    shared = SharedState(mutes=(runtime("svc-a", minutes=-1),))
    assert decide(alert_for("svc-a"), config(), {}, NOW, shared)[0].kind is DecisionKind.ROLL_BACK


def test_the_global_config_mute_wins_over_a_run_time_target_mute() -> None:
    cfg = config(mute={"reason": "freeze", "by": "bob"})
    [d] = decide(alert_for("svc-a"), cfg, {}, NOW, SharedState(mutes=(runtime("svc-a"),)))
    assert d.mute is not None and (d.mute.source, d.mute.scope, d.mute.by) == (
        MuteSource.CONFIG, MuteScope.GLOBAL, "bob")


def test_a_global_run_time_mute_wins_over_the_targets_config_mute() -> None:
    doc = config().model_dump(mode="json", exclude_none=True)
    doc["targets"][0]["mute"] = {"reason": "load test", "by": "dave"}
    [d] = decide(alert_for("svc-a"), parse_config(yaml.safe_dump(doc)), {}, NOW,
                 SharedState(mutes=(runtime(GLOBAL, by="carol"),)))
    assert d.mute is not None and (d.mute.source, d.mute.scope, d.mute.by) == (
        MuteSource.RUNTIME, MuteScope.GLOBAL, "carol")


def test_the_fourth_target_within_the_window_trips_the_breaker() -> None:
    states = {n: started(1) for n in NAMES[:3]}
    [d] = decide(alert_for("svc-d"), config(), states, NOW)
    assert d.kind is DecisionKind.BREAKER_OPEN
    assert d.details["breaker_targets"] == "svc-a,svc-b,svc-c"


def test_rollbacks_older_than_the_window_do_not_count_towards_the_breaker() -> None:
    states = {n: started(6) for n in NAMES[:3]}  # window 300 s
    assert decide(alert_for("svc-d"), config(), states, NOW)[0].kind is DecisionKind.ROLL_BACK


def test_rollbacks_before_a_person_closed_the_breaker_do_not_count_again() -> None:
    states = {n: started(2) for n in NAMES[:3]}
    shared = SharedState(breaker=BreakerState(state="closed", closed_by="erin", closed_at=NOW - timedelta(minutes=1)))
    assert decide(alert_for("svc-d"), config(), states, NOW, shared)[0].kind is DecisionKind.ROLL_BACK


def test_an_open_breaker_stops_every_automatic_rollback() -> None:
    shared = SharedState(breaker=BreakerState(state="open", opened_at=NOW, reason="four targets",
                                              targets=("svc-a",)))
    [d] = decide(alert_for("svc-b"), config(), {}, NOW, shared)
    assert d.kind is DecisionKind.BREAKER_OPEN
    assert "receiver breaker close" in d.reason


def test_a_larger_max_targets_lets_more_targets_roll_back() -> None:
    states = {n: started(1) for n in NAMES[:3]}
    cfg = config(breaker={"max_targets": 4})
    assert decide(alert_for("svc-d"), cfg, states, NOW)[0].kind is DecisionKind.ROLL_BACK


class FakeShared:
    def __init__(self) -> None:
        self.state = SharedState()

    def current(self) -> SharedState:
        return self.state

    async def open_breaker(self, targets: list[str], reason: str) -> BreakerState:
        self.state = SharedState(breaker=BreakerState(state="open", opened_at=NOW, reason=reason,
                                                      targets=tuple(targets)))
        return self.state.breaker


async def test_a_run_time_mute_set_after_a_quiet_answer_is_not_answered_from_the_repeat_cache() -> None:
    from receiver.intake.deliveries import Service
    from tests.fixtures.receiver import FakeExecutor, FakeNotifier, FakeStates

    cfg = config()
    done = TargetState(canary_replicas=0, stable_replicas=5, stable_exists=True, canary_exists=True)
    shared = FakeShared()
    service = Service(lambda: cfg, FakeStates({"svc-a": done}), FakeExecutor(lambda: cfg), FakeNotifier(),
                      clock=lambda: NOW, shared=shared)
    body = json.dumps(firing_payload(service="svc-a")).encode()
    first = await service.handle(parse_payload(body), body)
    assert first.decisions[0].kind is DecisionKind.ALREADY_ROLLED_BACK
    assert await service.repeat(body) is not None  # the usual re-send: reused
    shared.state = SharedState(mutes=(runtime("svc-a"),))
    assert await service.repeat(body) is None
    assert (await service.handle(parse_payload(body), body)).decisions[0].kind is DecisionKind.MUTED


async def test_only_the_replica_that_opens_the_breaker_tells_slack() -> None:
    from receiver.intake.deliveries import Service
    from tests.fixtures.receiver import FakeExecutor, FakeNotifier, FakeStates

    cfg = config()
    shared = FakeShared()
    notifier = FakeNotifier()
    states = FakeStates({n: started(1) for n in NAMES[:3]})
    service = Service(lambda: cfg, states, FakeExecutor(lambda: cfg), notifier, clock=lambda: NOW, shared=shared)
    result = await service.handle(alert_for("svc-d"))
    assert [d.kind for d in result.decisions] == [DecisionKind.BREAKER_OPEN]
    assert shared.state.breaker.targets == ("svc-a", "svc-b", "svc-c", "svc-d")
    assert [d.kind for d, _ in notifier.told] == [DecisionKind.BREAKER_OPEN]
    await service.handle(alert_for("svc-d"))  # open already: no second message
    assert len(notifier.told) == 1
