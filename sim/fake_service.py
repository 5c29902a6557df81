"""A stand-in for one finance-service pod: the metrics deploy/prometheus/rules.yml reads
(tests and `receiver demo`).

The end-to-end test needs v1 and v2 "pods" whose metrics a real Prometheus scrapes, and
whose health it can break on demand (7 % errors, slow responses, CPU, failures). Each
instance has its own CollectorRegistry, as each pod has its own /metrics.

Traffic is synthetic and steady: every scrape (and every setter) first accounts for the
requests that would have arrived since the last one at ``requests_per_second``, with the
configured error ratio and latencies. Counting at scrape time instead of on a timer
gives Prometheus exactly the same counter slopes with no background task, so rate()
over a few 1 s scrapes already shows the configured ratio. ``set_serving(False)`` (the
pod scaled away) stops the traffic: the counters freeze, rate() drops to 0 and the
error-rate alert resolves.

Metrics (labels service and version on every series):
  http_requests_total{code}            counter, code "200" or "500"
  http_request_duration_seconds        histogram
  process_cpu_usage                    gauge, ratio 0..1 of the CPU limit
  process_memory_usage                 gauge, ratio 0..1 of the memory limit
  db_connection_failures_total         counter
  business_flow_failures_total{flow}   counter
  db_query_duration_seconds            histogram
  external_api_duration_seconds        histogram
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

HTTP_BUCKETS = (0.05, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
DB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
API_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0)
DEFAULT_FLOW = "payment"


@dataclass
class _Metrics:
    """One pod's metric families, bound to its own registry."""

    registry: CollectorRegistry
    requests: Counter
    duration: Histogram
    cpu: Gauge
    memory: Gauge
    db_failures: Counter
    flow_failures: Counter
    db_query: Histogram
    external_api: Histogram

    @classmethod
    def create(cls, service: str, version: str) -> _Metrics:
        reg = CollectorRegistry(auto_describe=True)
        sv = ["service", "version"]
        m = cls(
            registry=reg,
            requests=Counter("http_requests", "Requests by status.", [*sv, "code"], registry=reg),
            duration=Histogram(
                "http_request_duration_seconds", "Response time.", sv, buckets=HTTP_BUCKETS, registry=reg
            ),
            cpu=Gauge("process_cpu_usage", "CPU used, ratio of the limit.", sv, registry=reg),
            memory=Gauge("process_memory_usage", "Memory used, ratio of the limit.", sv, registry=reg),
            db_failures=Counter(
                "db_connection_failures", "Failed database connections.", sv, registry=reg
            ),
            flow_failures=Counter(
                "business_flow_failures", "Failed critical business flows.", [*sv, "flow"], registry=reg
            ),
            db_query=Histogram(
                "db_query_duration_seconds", "Database query time.", sv, buckets=DB_BUCKETS, registry=reg
            ),
            external_api=Histogram(
                "external_api_duration_seconds", "External API call time.", sv,
                buckets=API_BUCKETS, registry=reg,
            ),
        )
        # Create every child at zero so the first failure is an increase Prometheus sees.
        for code in ("200", "500"):
            m.requests.labels(service, version, code)
        m.db_failures.labels(service, version)
        for hist in (m.duration, m.db_query, m.external_api):
            hist.labels(service, version)
        m.flow_failures.labels(service, version, DEFAULT_FLOW)
        return m


@dataclass
class FakeServiceHandle:
    """A running fake pod. Setters take effect for traffic from now on."""

    service: str
    version: str
    url: str
    metrics: _Metrics
    runner: web.AppRunner
    clock: Callable[[], float]
    requests_per_second: float
    error_ratio: float = 0.0
    latency: float = 0.05
    db_query_latency: float = 0.01
    external_api_latency: float = 0.2
    serving: bool = True
    _last: float = field(default=0.0, init=False)
    _pending_requests: float = field(default=0.0, init=False)
    _pending_errors: float = field(default=0.0, init=False)

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    @property
    def requests_total(self) -> int:
        """All requests counted so far (after accounting for the elapsed time)."""
        self.advance()
        return int(sum(self._count(code) for code in ("200", "500")))

    @property
    def errors_total(self) -> int:
        self.advance()
        return int(self._count("500"))

    def _count(self, code: str) -> float:
        labels = {"service": self.service, "version": self.version, "code": code}
        return self.metrics.registry.get_sample_value("http_requests_total", labels) or 0.0

    def advance(self) -> None:
        """Account for the synthetic requests that arrived since the last call."""
        now = self.clock()
        elapsed, self._last = max(0.0, now - self._last), now
        if not self.serving:
            return
        self._pending_requests += elapsed * self.requests_per_second
        n = math.floor(self._pending_requests)
        self._pending_requests -= n
        self._pending_errors += n * self.error_ratio
        errors = min(n, math.floor(self._pending_errors + 1e-9))
        self._pending_errors -= errors
        self._record(n - errors, errors)

    def _record(self, ok: int, errors: int) -> None:
        labels = (self.service, self.version)
        if ok:
            self.metrics.requests.labels(*labels, "200").inc(ok)
        if errors:
            self.metrics.requests.labels(*labels, "500").inc(errors)
        for _ in range(ok + errors):
            self.metrics.duration.labels(*labels).observe(self.latency)
            self.metrics.db_query.labels(*labels).observe(self.db_query_latency)
            self.metrics.external_api.labels(*labels).observe(self.external_api_latency)

    def serve_one(self) -> bool:
        """Count one real request (GET /); True when it succeeds."""
        self._pending_errors += self.error_ratio
        failed = self._pending_errors >= 1 - 1e-9
        if failed:
            self._pending_errors -= 1
        self._record(0 if failed else 1, 1 if failed else 0)
        return not failed

    def set_error_ratio(self, ratio: float) -> None:
        if not 0 <= ratio <= 1:
            raise ValueError("error ratio must be within 0..1")
        self.advance()
        self.error_ratio = ratio

    def set_latency(self, seconds: float) -> None:
        self.advance()
        self.latency = seconds

    def set_db_query_latency(self, seconds: float) -> None:
        self.advance()
        self.db_query_latency = seconds

    def set_external_api_latency(self, seconds: float) -> None:
        self.advance()
        self.external_api_latency = seconds

    def set_cpu(self, ratio: float) -> None:
        self.metrics.cpu.labels(self.service, self.version).set(ratio)

    def set_memory(self, ratio: float) -> None:
        self.metrics.memory.labels(self.service, self.version).set(ratio)

    def db_failures(self, n: int = 1) -> None:
        self.metrics.db_failures.labels(self.service, self.version).inc(n)

    def business_failures(self, n: int = 1, flow: str = DEFAULT_FLOW) -> None:
        self.metrics.flow_failures.labels(self.service, self.version, flow).inc(n)

    def set_serving(self, serving: bool) -> None:
        """False = the pod takes no traffic (scaled to 0): counters stop moving."""
        self.advance()
        self.serving = serving

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_fake_service(
    version: str,
    service: str = "finance-service",
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    requests_per_second: float = 200.0,
    clock: Callable[[], float] = time.monotonic,
) -> FakeServiceHandle:
    """Start one fake pod on ``host:port`` (0 = a free port) and return its handle."""
    box: list[FakeServiceHandle] = []

    async def metrics(_: web.Request) -> web.Response:
        handle = box[0]
        handle.advance()
        body = generate_latest(handle.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def index(_: web.Request) -> web.Response:
        handle = box[0]
        if not handle.serving:
            return web.Response(status=503, text="not serving\n")
        ok = handle.serve_one()
        return web.Response(status=200 if ok else 500, text=f"{service} {version}\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    handle = FakeServiceHandle(
        service=service,
        version=version,
        url=f"http://{bound_host}:{bound_port}",
        metrics=_Metrics.create(service, version),
        runner=runner,
        clock=clock,
        requests_per_second=requests_per_second,
    )
    handle._last = clock()
    handle.set_cpu(0.3)
    handle.set_memory(0.4)
    box.append(handle)
    return handle
