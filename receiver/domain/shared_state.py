"""State every replica shares (run-time mutes, the blast-radius breaker): typed, frozen
views and pure functions over them. Stored by receiver.kube.shared_state in one
ConfigMap as two JSON documents; this module only parses, encodes and reasons.

Document formats (data keys of the ConfigMap)::

    mutes:   {"*": {...}, "<target>": {"by", "reason", "until", "created_at", "source": "runtime"}}
    breaker: {"state": "open"|"closed", "opened_at", "reason", "targets": [...],
              "closed_by", "closed_at"}

A run-time mute always has an ``until`` (it expires by itself; a mute "until removed"
belongs in the config file, where review sees it). Times are RFC 3339 in UTC.

A corrupt document never raises out of ``parse_state``: it is reported in
``SharedState.problems`` and read as empty (no run-time mutes, breaker closed), so the
receiver keeps protecting the service and the problem is shown where people look.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

GLOBAL = "*"  # the mutes key of a mute covering every target
SOURCE_RUNTIME = "runtime"
KEY_MUTES = "mutes"
KEY_BREAKER = "breaker"
#: Expired mutes are dropped from the document on the next write after this long, so
#: replicas that were briefly away can still announce the expiry.
PRUNE_AFTER = timedelta(hours=1)
MAX_TEXT = 1024  # by / reason: shown in Slack, kept well under the ConfigMap limit


class StateError(ValueError):
    """A shared-state document that cannot be read (names the key and what is wrong)."""


@dataclass(frozen=True)
class RuntimeMute:
    """A mute set at run time (CLI or HTTP), obeyed by every replica until ``until``."""

    target: str  # a target's name, or GLOBAL
    by: str
    reason: str
    until: datetime
    created_at: datetime
    source: str = SOURCE_RUNTIME

    @property
    def is_global(self) -> bool:
        return self.target == GLOBAL

    def active(self, now: datetime) -> bool:
        return now < self.until


@dataclass(frozen=True)
class BreakerState:
    """The blast-radius breaker: open = no automatic rollbacks until a person closes it."""

    state: Literal["open", "closed"] = "closed"
    opened_at: datetime | None = None
    reason: str = ""
    targets: tuple[str, ...] = ()  # the targets whose rollbacks tripped it
    closed_by: str | None = None
    closed_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.state == "open"


CLOSED = BreakerState()


@dataclass(frozen=True)
class SharedState:
    """One reading of the shared state; ``problems`` names documents that were unreadable."""

    mutes: tuple[RuntimeMute, ...] = ()  # sorted: GLOBAL first, then by target
    breaker: BreakerState = CLOSED
    problems: tuple[str, ...] = field(default=())

    def mute(self, target: str | None) -> RuntimeMute | None:
        """The stored mute of ``target`` (None = the global one), expired or not."""
        key = target or GLOBAL
        return next((m for m in self.mutes if m.target == key), None)


EMPTY = SharedState()


# -- time ------------------------------------------------------------------------------


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value.microsecond == 0 \
        else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(where: str, value: Any, *, optional: bool = False) -> datetime | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise StateError(f"{where}: expected an RFC 3339 time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise StateError(f"{where}: not an RFC 3339 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise StateError(f"{where}: time without a zone: {value!r}")
    return parsed


def _text(where: str, value: Any, *, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str) or (not value and not optional):
        raise StateError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _document(key: str, text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise StateError(f"{key}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise StateError(f"{key}: expected a JSON object, got {type(doc).__name__}")
    return doc


# -- mutes -------------------------------------------------------------------------------


def _sorted(mutes: Iterable[RuntimeMute]) -> tuple[RuntimeMute, ...]:
    return tuple(sorted(mutes, key=lambda m: (not m.is_global, m.target)))


def parse_mutes(text: str) -> tuple[RuntimeMute, ...]:
    """The ``mutes`` document; StateError naming the entry and field when it is corrupt."""
    out = []
    for target, entry in _document(KEY_MUTES, text).items():
        where = f"{KEY_MUTES}[{target}]"
        if not isinstance(entry, dict):
            raise StateError(f"{where}: expected an object, got {entry!r}")
        source = entry.get("source", SOURCE_RUNTIME)
        if source != SOURCE_RUNTIME:
            raise StateError(f"{where}.source: expected {SOURCE_RUNTIME!r}, got {source!r}")
        until = _parse_time(f"{where}.until", entry.get("until"))
        created = _parse_time(f"{where}.created_at", entry.get("created_at"))
        assert until is not None and created is not None
        out.append(RuntimeMute(
            target=target, by=_text(f"{where}.by", entry.get("by")),
            reason=_text(f"{where}.reason", entry.get("reason")),
            until=until, created_at=created,
        ))
    return _sorted(out)


def encode_mutes(mutes: Iterable[RuntimeMute]) -> str:
    return json.dumps({
        m.target: {"by": m.by, "reason": m.reason, "until": _time(m.until),
                   "created_at": _time(m.created_at), "source": m.source}
        for m in _sorted(mutes)
    }, sort_keys=False, separators=(",", ":"))


def active_mutes(mutes: Iterable[RuntimeMute], now: datetime) -> tuple[RuntimeMute, ...]:
    """The mutes in force at ``now`` (expired ones ignored)."""
    return tuple(m for m in mutes if m.active(now))


def mute_for(mutes: Iterable[RuntimeMute], target: str, now: datetime) -> RuntimeMute | None:
    """The run-time mute that applies to ``target`` at ``now``: its own before the global one."""
    active = {m.target: m for m in active_mutes(mutes, now)}
    return active.get(target) or active.get(GLOBAL)


def expired_between(mutes: Iterable[RuntimeMute], since: datetime, now: datetime) -> tuple[RuntimeMute, ...]:
    """Mutes whose ``until`` fell in (since, now]: what to announce as expired since the last look."""
    return tuple(m for m in _sorted(mutes) if since < m.until <= now)


def new_mute(
    target: str | None, by: str, reason: str, until: datetime, now: datetime, known_targets: Iterable[str],
) -> RuntimeMute:
    """A validated mute; ValueError with a message for a person when the input is bad."""
    known = sorted(known_targets)
    if target is not None and target not in known:
        raise ValueError(f"unknown target {target!r}; configured targets: {', '.join(known) or 'none'}")
    if not by.strip():
        raise ValueError("who mutes must be given (by)")
    if not reason.strip():
        raise ValueError("a reason must be given")
    if len(by) > MAX_TEXT or len(reason) > MAX_TEXT:
        raise ValueError(f"by and reason may be at most {MAX_TEXT} characters")
    if until.tzinfo is None:
        raise ValueError("until must carry a time zone, e.g. 2026-11-27T18:00:00Z")
    if until <= now:
        raise ValueError(f"until {_time(until)} is not in the future (now {_time(now)})")
    return RuntimeMute(target=target or GLOBAL, by=by.strip(), reason=reason.strip(), until=until, created_at=now)


def with_mute(mutes: Iterable[RuntimeMute], mute: RuntimeMute, now: datetime) -> tuple[RuntimeMute, ...]:
    """``mutes`` with ``mute`` set (replacing that target's), long-expired ones pruned."""
    return prune([*(m for m in mutes if m.target != mute.target), mute], now)


def without_mute(mutes: Iterable[RuntimeMute], target: str | None, now: datetime) -> tuple[RuntimeMute, ...]:
    key = target or GLOBAL
    return prune([m for m in mutes if m.target != key], now)


def prune(mutes: Iterable[RuntimeMute], now: datetime) -> tuple[RuntimeMute, ...]:
    """Drop mutes that expired more than PRUNE_AFTER ago (the document stays small)."""
    return _sorted(m for m in mutes if m.until > now - PRUNE_AFTER)


# -- breaker -------------------------------------------------------------------------------


def parse_breaker(text: str) -> BreakerState:
    doc = _document(KEY_BREAKER, text)
    state = doc.get("state")
    if state not in ("open", "closed"):
        raise StateError(f"{KEY_BREAKER}.state: expected 'open' or 'closed', got {state!r}")
    targets = doc.get("targets") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise StateError(f"{KEY_BREAKER}.targets: expected a list of target names, got {targets!r}")
    return BreakerState(
        state=state,
        opened_at=_parse_time(f"{KEY_BREAKER}.opened_at", doc.get("opened_at"), optional=True),
        reason=_text(f"{KEY_BREAKER}.reason", doc.get("reason"), optional=True),
        targets=tuple(targets),
        closed_by=_text(f"{KEY_BREAKER}.closed_by", doc.get("closed_by"), optional=True) or None,
        closed_at=_parse_time(f"{KEY_BREAKER}.closed_at", doc.get("closed_at"), optional=True),
    )


def encode_breaker(b: BreakerState) -> str:
    return json.dumps({
        "state": b.state,
        "opened_at": _time(b.opened_at) if b.opened_at else None,
        "reason": b.reason,
        "targets": list(b.targets),
        "closed_by": b.closed_by,
        "closed_at": _time(b.closed_at) if b.closed_at else None,
    }, separators=(",", ":"))


def opened(targets: Iterable[str], reason: str, now: datetime, known_targets: Iterable[str]) -> BreakerState:
    """The breaker opened by ``targets``' rollbacks; ValueError for bad input."""
    names = tuple(dict.fromkeys(targets))
    known = set(known_targets)
    unknown = [t for t in names if t not in known]
    if unknown:
        raise ValueError(f"unknown target(s) {', '.join(unknown)}; configured targets: {', '.join(sorted(known))}")
    if not reason.strip():
        raise ValueError("a reason must be given")
    return BreakerState(state="open", opened_at=now, reason=reason.strip(), targets=names)


def closed(previous: BreakerState, by: str, now: datetime) -> BreakerState:
    """The breaker closed by a person (what it was opened for is kept, for status views)."""
    if not by.strip():
        raise ValueError("who closes the breaker must be given (by)")
    return replace(previous, state="closed", closed_by=by.strip(), closed_at=now)


# -- the whole ConfigMap ------------------------------------------------------------------------


def parse_state(data: Mapping[str, str] | None) -> SharedState:
    """The ConfigMap's data as a SharedState. Never raises: an unreadable document is read
    as empty and named in ``problems``."""
    data = data or {}
    problems: list[str] = []
    mutes: tuple[RuntimeMute, ...] = ()
    breaker = CLOSED
    if data.get(KEY_MUTES):
        try:
            mutes = parse_mutes(data[KEY_MUTES])
        except StateError as e:
            problems.append(str(e))
    if data.get(KEY_BREAKER):
        try:
            breaker = parse_breaker(data[KEY_BREAKER])
        except StateError as e:
            problems.append(str(e))
    return SharedState(mutes=mutes, breaker=breaker, problems=tuple(problems))


def encode_state(state: SharedState) -> dict[str, str]:
    return {KEY_MUTES: encode_mutes(state.mutes), KEY_BREAKER: encode_breaker(state.breaker)}
