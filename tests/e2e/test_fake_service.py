"""The fake finance-service pod and the real Prometheus evaluating the shipped rules on it."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sim.fake_service import FakeServiceHandle, start_fake_service
from tests.e2e.prom import Prometheus, running_prometheus
from tests.e2e.rules_fast import RULES, fast_rules


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def scrape(handle: FakeServiceHandle) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(handle.metrics_url) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], code: str) -> float:
    key = ("http_requests_total", (("code", code), ("service", "finance-service"), ("version", "v2")))
    return samples[key]


async def test_synthetic_traffic_arrives_at_the_configured_rate_and_error_ratio() -> None:
    clock = FakeClock()
    v2 = await start_fake_service("v2", clock=clock, requests_per_second=50)
    try:
        v2.set_error_ratio(0.07)
        clock.now += 20
        samples = await scrape(v2)
        assert requests(samples, "200") + requests(samples, "500") == 1000
        assert requests(samples, "500") == 70
        count = ("http_request_duration_seconds_count", (("service", "finance-service"), ("version", "v2")))
        assert samples[count] == 1000
    finally:
        await v2.stop()


async def test_a_pod_that_stops_serving_stops_counting_requests() -> None:
    clock = FakeClock()
    v2 = await start_fake_service("v2", clock=clock, requests_per_second=50)
    try:
        v2.set_error_ratio(0.5)
        clock.now += 2
        before = v2.requests_total
        v2.set_serving(False)
        clock.now += 30
        assert v2.requests_total == before == 100
        async with aiohttp.ClientSession() as http, http.get(v2.url) as resp:
            assert resp.status == 503
    finally:
        await v2.stop()


async def test_failures_and_gauges_show_up_in_the_pods_own_registry() -> None:
    v1 = await start_fake_service("v1")
    v2 = await start_fake_service("v2")
    try:
        v2.db_failures(2)
        v2.business_failures(1, flow="transfer")
        v2.set_cpu(0.95)
        samples = await scrape(v2)
        labels = (("service", "finance-service"), ("version", "v2"))
        assert samples[("db_connection_failures_total", labels)] == 2
        assert samples[("business_flow_failures_total", (("flow", "transfer"), *labels))] == 1
        assert samples[("process_cpu_usage", labels)] == 0.95
        v1_samples = await scrape(v1)
        v1_labels = (("service", "finance-service"), ("version", "v1"))
        assert v1_samples[("db_connection_failures_total", v1_labels)] == 0
        assert ("db_connection_failures_total", labels) not in v1_samples
    finally:
        await v1.stop()
        await v2.stop()


async def test_every_metric_the_shipped_rules_read_is_exposed() -> None:
    exprs = RULES.read_text()
    wanted = set(re.findall(r"\b([a-z_]+_(?:total|bucket|usage))\b", exprs))
    assert len(wanted) >= 7
    v2 = await start_fake_service("v2")
    try:
        exposed = {name for name, _ in await scrape(v2)}
    finally:
        await v2.stop()
    assert wanted <= exposed, f"rules read metrics the fake service lacks: {wanted - exposed}"


async def settled_value(prom: Prometheus) -> float:
    """The HighErrorRate value once two evaluations in a row agree to 0.5 %."""
    previous = -1.0
    for _ in range(100):
        alert = await prom.wait_for_alert("HighErrorRate", timeout=10)
        value = float(alert["annotations"]["value"])
        if abs(value - 0.07) < 0.005 and abs(value - previous) < 0.005:
            return value
        previous = value
        await asyncio.sleep(0.2)
    return previous


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed")
async def test_real_prometheus_fires_high_error_rate_for_v2_at_seven_percent(tmp_path: Path) -> None:
    rules = fast_rules(RULES, tmp_path / "rules-fast.yml")
    v1 = await start_fake_service("v1", requests_per_second=400)
    v2 = await start_fake_service("v2", requests_per_second=200)
    try:
        v2.set_error_ratio(0.07)
        async with running_prometheus([v1.metrics_url, v2.metrics_url], rules, tmp_path) as prom:
            alert = await prom.wait_for_alert("HighErrorRate", timeout=30)
            assert alert["labels"]["version"] == "v2"
            assert alert["labels"]["service"] == "finance-service"
            assert alert["labels"]["severity"] == "critical"
            # It fires as soon as the 5 s window crosses 5 %; once the window holds only
            # the new traffic the value is the error ratio itself.
            assert 0.05 < float(alert["annotations"]["value"]) < 0.085
            steady = await settled_value(prom)
            assert steady == pytest.approx(0.07, abs=0.005)
            assert [a["labels"]["version"] for a in await prom.alerts()
                    if a["labels"]["alertname"] == "HighErrorRate"] == ["v2"]

            v2.set_serving(False)
            await prom.wait_for_no_alert("HighErrorRate", timeout=30)
    finally:
        await v1.stop()
        await v2.stop()
