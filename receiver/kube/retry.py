"""Capped exponential backoff with full jitter, and Retry-After honoured.

Full jitter (sleep uniformly in [0, min(cap, base * 2^n)]) keeps 200 rollbacks hitting a
throttled API server from retrying in lock-step. Retry-After is a floor, not an exact
time: never below base (Retry-After: 0 must not become a tight loop), plus jitter so the
throttled clients do not all come back in the same instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying a transient failure."""

    base_seconds: float = 0.1
    cap_seconds: float = 5.0
    give_up_after_seconds: float = 120.0  # a rollback outlives any blip shorter than this
    max_retry_after_seconds: float = 60.0
    # Per attempt: a server that accepts and never answers must not hang a scale PATCH
    # forever while the Lease renewals keep the rollback looking alive.
    request_timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    watch_margin_seconds: float = 30.0  # a watch's read timeout is its timeoutSeconds + this

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before attempt ``attempt + 1`` (attempt counts from 0)."""
        if retry_after is not None:
            wait = min(max(retry_after, self.base_seconds), self.max_retry_after_seconds)
            return wait + random.uniform(0, max(self.base_seconds, 0.1 * wait))
        ceiling = min(self.cap_seconds, self.base_seconds * (2 ** min(attempt, 30)))
        return random.uniform(0, ceiling)
