"""Reading what a person typed: durations ("2h", "90m", "1h30m", "1d") and times (RFC 3339).

ValueError with a message for a person on anything else, before anything is written.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
#: Longer than this belongs in config.yaml, where review sees it.
MAX_MUTE = timedelta(days=30)


def parse_duration(text: str) -> timedelta:
    """"2h", "90m", "1h30m", "1d", "1w" (as amtool); a bare number is refused (which unit?)."""
    value = text.strip()
    pos, seconds = 0, 0.0
    for m in _PART.finditer(value):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not value or pos != len(value):
        raise ValueError(f"invalid duration {text!r}: use a number with a unit, e.g. 30m, 2h, 1h30m, 1d")
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be more than 0")
    return timedelta(seconds=seconds)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with a zone ("2026-11-27T18:00:00Z", "...+01:00")."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use RFC 3339 with a zone, e.g. 2026-11-27T18:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone: add Z (UTC) or an offset, e.g. 2026-11-27T18:00:00Z")
    return parsed.astimezone(UTC)


def resolve_until(until: datetime | timedelta | str, now: datetime) -> datetime:
    """``until`` as a time: a datetime as is, a timedelta or duration text from ``now``,
    other text as an RFC 3339 time. Not in the future, or too far: ValueError."""
    if isinstance(until, str):
        text = until.strip()
        until = parse_time(text) if text[:1].isdigit() and ("T" in text or "-" in text) else parse_duration(text)
    if isinstance(until, timedelta):
        if until <= timedelta(0):
            raise ValueError("the duration must be more than 0")
        until = now + until
    if until.tzinfo is None:
        raise ValueError("until must carry a time zone, e.g. 2026-11-27T18:00:00Z")
    if until <= now:
        raise ValueError(f"until {format_time(until)} is not in the future (now {format_time(now)})")
    if until - now > MAX_MUTE:
        raise ValueError(f"until {format_time(until)} is more than {MAX_MUTE.days} days away: "
                         "a mute that long belongs in config.yaml")
    return until


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_duration(delta: timedelta) -> str:
    """3600 s -> "1 h", 5400 s -> "1 h 30 min", 90 s -> "2 min" (rounded to minutes), 20 s -> "20 s"."""
    if delta.total_seconds() < 59.5:
        return f"{max(1, round(delta.total_seconds()))} s"
    minutes = round(delta.total_seconds() / 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{mins} min" if mins else ""]
    return " ".join(p for p in parts if p)
