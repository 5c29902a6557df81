"""Timestamps and identifiers in the formats the API server writes."""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid

# The alphabet of k8s.io/apimachinery/pkg/util/rand: no vowels, no confusable digits.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_last_second: tuple[int, str] = (-1, "")


def rfc3339(t: dt.datetime | None = None) -> str:
    """metav1.Time: second precision, Z. The current time is formatted once per second
    (every write stamps managedFields with it)."""
    global _last_second
    if t is None:
        second = int(time.time())  # the clock datetime.now reads, truncated as %S is
        if second != _last_second[0]:
            _last_second = (second, _format(dt.datetime.fromtimestamp(second, dt.UTC)))
        return _last_second[1]
    return _format(t)


def _format(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(t: dt.datetime | None = None) -> str:
    """metav1.MicroTime: `2006-01-02T15:04:05.000000Z07:00`."""
    t = t or now()
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def new_uid() -> str:
    return str(uuid.uuid4())


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_SAFE) for _ in range(n))


def safe_encode(s: str) -> str:
    """rand.SafeEncodeString: map each byte into the safe alphabet."""
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in s)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, as the AGE column shows it."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    m = s // 60
    if m < 10:
        rem = s % 60
        return f"{m}m{rem}s" if rem else f"{m}m"
    if m < 60 * 3:
        return f"{m}m"
    h = m // 60
    if h < 8:
        rem = m % 60
        return f"{h}h{rem}m" if rem else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        rem = h % 24
        return f"{h // 24}d{rem}h" if rem else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        dy = (h // 24) % 365
        return f"{h // 24 // 365}y{dy}d" if dy else f"{h // 24 // 365}y"
    return f"{h // 24 // 365}y"
