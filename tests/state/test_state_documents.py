"""The shared-state documents: what is active when, and corrupt ones read without a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver.domain import shared_state as dom

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def mute(target: str, minutes: float, by: str = "alice") -> dom.RuntimeMute:
    return dom.RuntimeMute(target=target, by=by, reason="why", until=NOW + timedelta(minutes=minutes), created_at=NOW)


def test_mutes_round_trip_through_their_document() -> None:
    mutes = (mute(dom.GLOBAL, 10), mute("a", 60.5))
    assert dom.parse_mutes(dom.encode_mutes(reversed(mutes))) == mutes
    state = dom.SharedState(mutes=mutes, breaker=dom.opened(["a"], "burst", NOW, ["a"]))
    assert dom.parse_state(dom.encode_state(state)) == state


def test_expired_mutes_are_ignored_and_a_targets_own_mute_wins_over_the_global_one() -> None:
    mutes = (mute(dom.GLOBAL, 30, by="global"), mute("a", 10, by="own"), mute("b", -1))
    assert [m.target for m in dom.active_mutes(mutes, NOW)] == [dom.GLOBAL, "a"]
    assert dom.mute_for(mutes, "a", NOW).by == "own"  # type: ignore[union-attr]
    assert dom.mute_for(mutes, "b", NOW).by == "global"  # type: ignore[union-attr]  # its own expired
    assert dom.mute_for(mutes, "a", NOW + timedelta(minutes=20)).by == "global"  # type: ignore[union-attr]
    assert dom.mute_for(mutes, "a", NOW + timedelta(minutes=30)) is None


def test_expired_between_names_each_expiry_once() -> None:
    mutes = (mute("a", 5), mute("b", 10))
    assert [m.target for m in dom.expired_between(mutes, NOW, NOW + timedelta(minutes=5))] == ["a"]
    assert [m.target for m in dom.expired_between(mutes, NOW + timedelta(minutes=5),
                                                  NOW + timedelta(minutes=10))] == ["b"]


def test_long_expired_mutes_are_dropped_when_the_document_is_next_written() -> None:
    old = mute("old", -61)
    recent = mute("recent", -5)  # kept a while, so a replica that was away still announces it
    kept = dom.with_mute([old, recent], mute("new", 5), NOW)
    assert [m.target for m in kept] == ["new", "recent"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"mutes": "[1, 2]"}, "mutes: expected a JSON object, got list"),
        ({"mutes": '{"a": "x"}'}, "mutes[a]: expected an object, got 'x'"),
        ({"mutes": '{"a": {"by": "", "reason": "r", "until": "2026-12-01T04:00:00Z", '
                   '"created_at": "2026-12-01T03:00:00Z"}}'}, "mutes[a].by: expected a non-empty string"),
        ({"mutes": '{"a": {"by": "x", "reason": "r", "until": "2026-12-01T04:00:00", '
                   '"created_at": "2026-12-01T03:00:00Z"}}'}, "mutes[a].until: time without a zone"),
        ({"breaker": '{"state": "half"}'}, "breaker.state: expected 'open' or 'closed', got 'half'"),
        ({"breaker": "{"}, "breaker: not JSON"),
    ],
)
def test_a_corrupt_document_is_read_as_empty_and_named(data: dict[str, str], problem: str) -> None:
    state = dom.parse_state(data)
    assert (state.mutes, state.breaker) == ((), dom.CLOSED)
    assert len(state.problems) == 1 and state.problems[0].startswith(problem), state.problems


def test_closing_the_breaker_keeps_what_opened_it() -> None:
    opened = dom.opened(["a", "b", "a"], " burst ", NOW, ["a", "b"])
    assert (opened.is_open, opened.targets, opened.reason) == (True, ("a", "b"), "burst")
    closed = dom.closed(opened, "bob", NOW + timedelta(hours=1))
    assert (closed.is_open, closed.closed_by, closed.targets, closed.opened_at) == (False, "bob", ("a", "b"), NOW)
    assert dom.parse_breaker(dom.encode_breaker(closed)) == closed
