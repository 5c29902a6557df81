"""KubeError: an API failure carrying the API server's own words.

Transient failures (409, 429, 5xx, dropped connections) are retried by the gateway;
the rest (401, 403, 404, 422, ...) end the operation and are shown to people verbatim,
because "User X cannot patch resource deployments/scale" says exactly what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

TRANSIENT_STATUSES = frozenset({409, 429, 500, 502, 503, 504})


class KubeError(Exception):
    """A failed Kubernetes API call: status 0 means the connection failed."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        what: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.what = what
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """True when the same call may succeed if repeated."""
        return self.status == 0 or self.status in TRANSIENT_STATUSES

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    def __str__(self) -> str:
        where = f"{self.what}: " if self.what else ""
        code = f" ({self.status} {self.reason})" if self.status else f" ({self.reason})"
        return f"{where}{self.message}{code}"


class WatchExpired(KubeError):
    """The watch's resourceVersion is too old (410): re-list, then watch again."""


def _retry_after(headers: Mapping[str, str], status_obj: Mapping[str, Any]) -> float | None:
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    details = status_obj.get("details") or {}
    seconds = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    return float(seconds) if isinstance(seconds, int | float) else None


def error_from_response(
    status: int, body: bytes, headers: Mapping[str, str], what: str
) -> KubeError:
    """Build a KubeError from a non-2xx answer: a Status object or plain text (429)."""
    text = body.decode("utf-8", errors="replace").strip()
    obj: dict[str, Any] = {}
    try:
        parsed = json.loads(text) if text else {}
        if isinstance(parsed, dict):
            obj = parsed
    except ValueError:
        pass
    message = str(obj.get("message") or text or f"HTTP {status}")
    reason = str(obj.get("reason") or _default_reason(status))
    return KubeError(
        status, reason, message, what=what, retry_after=_retry_after(headers, obj)
    )


def error_from_status_object(obj: Mapping[str, Any], what: str) -> KubeError:
    """A watch ERROR event's Status, as a KubeError (WatchExpired for 410)."""
    code = int(obj.get("code") or 500)
    cls = WatchExpired if code == 410 else KubeError
    return cls(code, str(obj.get("reason") or _default_reason(code)),
               str(obj.get("message") or ""), what=what)


def _default_reason(status: int) -> str:
    return {
        400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
        409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid",
        429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
        504: "Timeout",
    }.get(status, "Unknown")
