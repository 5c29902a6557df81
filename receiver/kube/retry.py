"""Capped exponential backoff with full jitter, and Retry-After honoured.

Full jitter (sleep uniformly in [0, min(cap, base * 2^n)]) keeps 200 rollbacks hitting a
throttled API server from retrying in lock-step. Retry-After is a floor, not an exact
time: never below base (Retry-After: 0 must not become a tight loop), plus jitter so the
throttled clients do not all come back in the same instant.

The CLI bounds each call by kubectl's ``--request-timeout`` (``for_request_timeout``)
and prints every retry as it happens (``on_retry``), so an unreachable cluster fails in
the time asked for, loudly, instead of after ``give_up_after_seconds`` of silence.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receiver.kube.errors import KubeError

# (what, error, seconds left before giving up): called before each retry's sleep
OnRetry = Callable[[str, "KubeError", float], None]

DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


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
    on_retry: OnRetry | None = None

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before attempt ``attempt + 1`` (attempt counts from 0)."""
        if retry_after is not None:
            wait = min(max(retry_after, self.base_seconds), self.max_retry_after_seconds)
            return wait + random.uniform(0, max(self.base_seconds, 0.1 * wait))
        ceiling = min(self.cap_seconds, self.base_seconds * (2 ** min(attempt, 30)))
        return random.uniform(0, ceiling)

    def for_request_timeout(self, seconds: float, on_retry: OnRetry | None = None) -> RetryPolicy:
        """This policy bounded by kubectl's --request-timeout: a call, retries included,
        gives up after ``seconds``; 0 means no timeout (retry until interrupted)."""
        if seconds <= 0:
            return replace(self, give_up_after_seconds=math.inf, on_retry=on_retry)
        return replace(
            self,
            give_up_after_seconds=seconds,
            request_timeout_seconds=min(self.request_timeout_seconds, seconds),
            connect_timeout_seconds=min(self.connect_timeout_seconds, seconds),
            on_retry=on_retry,
        )


def parse_duration(text: str) -> float:
    """kubectl's --request-timeout value in seconds: "30s", "1m", "1m30s", "500ms", or a
    bare number of seconds; "0" means no timeout. ValueError names what is wrong."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for m in DURATION.finditer(value):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if pos != len(value) or not value:
            raise ValueError(
                f"invalid duration {text!r}: use a number with a unit, e.g. 30s, 1m, 500ms (0 = no timeout)"
            ) from None
    if seconds < 0 or math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"invalid duration {text!r}: must be 0 (no timeout) or positive")
    return seconds


def reach_problem(err: BaseException) -> str:
    """Why a connection failed, in a few words ("connection refused", "no answer in 5 s")."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, TimeoutError):
            return "no answer in time"
        os_err = getattr(cause, "os_error", None)  # aiohttp's ClientConnectorError
        if isinstance(os_err, ConnectionRefusedError):
            return "connection refused"
        if isinstance(os_err, OSError) and os_err.strerror:
            return os_err.strerror.lower()
        cause = cause.__cause__
    return str(getattr(err, "message", "") or err) or type(err).__name__
