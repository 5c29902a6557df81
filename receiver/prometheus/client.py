"""An async client for Prometheus' instant queries, bounded by the caller's wait.

``POST /api/v1/query`` with a form body (as promtool and Grafana send it: no URL
length limit for long rule expressions). Transport errors, timeouts, 429 and 5xx are
retried with exponential backoff and jitter; a refusal (400/422 ``status: error``) is
not, and carries Prometheus' own message. The whole call, retries included, runs
under ``asyncio.timeout(wait)``: a caller deciding a rollback asks for 2 s and gets
an answer or PrometheusUnavailable after at most 2 s, never later, because a rollback
must never wait on monitoring. TLS failures are not retried either: a certificate does
not become trusted by asking again. Prometheus is also told the remaining time (the
``timeout`` parameter), so it stops evaluating a query nobody waits for.

    async with PrometheusClient(settings) as prom:
        result = await prom.query('sum by (version) (rate(x[2m]))', wait=2.0)
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import structlog

from receiver.domain.prometheus_settings import PrometheusSettings
from receiver.prometheus.errors import (
    PrometheusCredentialsError,
    PrometheusError,
    PrometheusResponseError,
    PrometheusUnavailable,
)
from receiver.prometheus.results import QueryResult, parse_query_response

log = structlog.get_logger(__name__)

#: Answers worth asking again: overload, proxies, Prometheus' own timeout/unavailable.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_BODY_SNIPPET = 200


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": half the step fixed, half random.

    Replicas that lost Prometheus at the same moment then spread their retries
    instead of arriving together, while no retry comes immediately.
    """

    first: float = 0.1
    factor: float = 2.0
    cap: float = 2.0

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait after failed ``attempt`` (1-based); ``rand`` in [0, 1)."""
        step = min(self.cap, self.first * self.factor ** (attempt - 1))
        return step / 2 + step / 2 * rand


class _Retry(Exception):
    """One attempt failed in a way another attempt may not."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        detail = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise PrometheusCredentialsError(f"cannot read the Prometheus {what} {path}: {detail}") from e


class PrometheusClient:
    """Instant queries against one Prometheus; one connection pool, closed by ``close``."""

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        backoff: Backoff = Backoff(),
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.backoff = backoff
        self._rand = rand
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            ca = self.settings.tls_config.ca_file
            tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls))
        return self._session

    def _auth(self) -> dict[str, str]:
        """Headers and basic auth for one request; files are read every time (rotation)."""
        s = self.settings
        if s.authorization is not None:
            token = _read_secret(s.authorization.credentials_file, "authorization credentials_file")
            return {"Authorization": f"{s.authorization.type} {token}"}
        if s.basic_auth is not None:
            password = _read_secret(s.basic_auth.password_file, "basic_auth password_file")
            pair = base64.b64encode(f"{s.basic_auth.username}:{password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}  # RFC 7617, UTF-8
        return {}

    async def query(self, expr: str, *, wait: float, at: float | None = None) -> QueryResult:
        """Evaluate ``expr`` now (or at unix time ``at``); answer within ``wait`` seconds.

        Raises PrometheusUnavailable when no answer came within ``wait`` (the reason
        names the last failure), PrometheusQueryError when Prometheus refused the query,
        PrometheusResponseError when something else answered, PrometheusCredentialsError
        when a credentials file cannot be read.
        """
        if wait <= 0:
            raise ValueError(f"wait must be positive, not {wait}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        attempts, last = 0, "no attempt finished"
        bound = asyncio.timeout_at(deadline)
        try:
            async with bound:
                while True:
                    attempts += 1
                    try:
                        return await self._once(expr, at, deadline - loop.time())
                    except _Retry as e:
                        last = e.reason
                    pause = self.backoff.delay(attempts, self._rand())
                    if loop.time() + pause >= deadline:
                        break  # no time left for another attempt: say so now
                    log.debug("prometheus_query_retry", attempt=attempts, reason=last)
                    await asyncio.sleep(pause)
        except TimeoutError:
            if not bound.expired():
                raise  # the caller's own timeout, not ours: theirs to handle
            # Our bound expired mid-attempt (see _once): same answer as running out of time.
        reason = f"no answer from Prometheus within {wait:g} s ({attempts} attempt(s); last: {last})"
        log.warning("prometheus_query_unavailable", attempts=attempts, wait_seconds=wait, reason=last)
        raise PrometheusUnavailable(reason, attempts=attempts)

    async def _once(self, expr: str, at: float | None, remaining: float) -> QueryResult:
        remaining = max(remaining, 0.001)
        form = {"query": expr, "timeout": f"{remaining:.3f}"}
        if at is not None:
            form["time"] = f"{at:.3f}"
        headers = self._auth()
        per_request = aiohttp.ClientTimeout(total=min(self.settings.request_timeout_seconds, remaining))
        url = f"{self.settings.url}/api/v1/query"
        try:
            async with self._http().post(url, data=form, headers=headers, timeout=per_request) as resp:
                status, text = resp.status, await resp.text(errors="replace")
        except TimeoutError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # The caller's bound expired and cancelled us; aiohttp may report that
                # as its own timeout. Swallowing it would retry past the bound.
                raise
            raise _Retry(f"request timed out after {per_request.total:.3g} s") from None
        except aiohttp.ClientSSLError as e:
            # An untrusted certificate or a TLS/plain-HTTP mismatch does not heal by asking again.
            raise PrometheusResponseError(f"TLS with {self.settings.url} failed: {e}") from None
        except aiohttp.ClientError as e:
            raise _Retry(f"{type(e).__name__}: {e}") from None
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = None
        if status in RETRY_STATUSES:
            detail = body.get("error") if isinstance(body, dict) else None
            raise _Retry(f"HTTP {status}: {detail or text[:_BODY_SNIPPET].strip() or 'no body'}")
        if body is None:
            raise PrometheusResponseError(
                f"HTTP {status} from {self.settings.url} is not Prometheus' API: "
                f"{text[:_BODY_SNIPPET].strip() or 'no body'}", status=status,
            )
        try:
            return parse_query_response(body, query=expr, status=status)
        except PrometheusError as e:
            log.warning("prometheus_query_failed", status=status, reason=e.reason)
            raise


__all__ = ["Backoff", "PrometheusClient"]
