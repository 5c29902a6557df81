"""A real Prometheus scraping three fake finance-service pods, shared by a test module.

v1 fails 2 % of its requests, v2 10 % and v3 takes no traffic at all (its error ratio
is 0/0 = NaN). Nothing in the tests changes them, so one Prometheus per module serves
every test in it, in any order. Readiness is learnt by polling Prometheus' own API with
a bound: the scrape targets are up, then the error-rate expression has a value for
every version (rate() needs two scrapes in its window).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from receiver.domain.prometheus_settings import PrometheusSettings
from sim.fake_service import FakeServiceHandle, start_fake_service
from sim.monitoring import Alertmanager, Prometheus, running_alertmanager, running_prometheus
from tests.e2e.rules_fast import RULES, fast_rules

READY_WITHIN = 30.0
ALERTMANAGER_YML = """
route: {receiver: nowhere, group_wait: 0s, group_interval: 1s, repeat_interval: 1h}
receivers: [{name: nowhere}]
"""
POLL = 0.1


@dataclass(frozen=True)
class World:
    prometheus: Prometheus
    alertmanager: Alertmanager  # receives the fast rules' alerts, with their generatorURL
    settings: PrometheusSettings
    error_rate_rule: str  # HighErrorRate's expression from the shipped rules, 5 s windows
    services: dict[str, FakeServiceHandle]


async def _until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    """Poll the coroutine function ``check`` until it returns True, within READY_WITHIN."""
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(POLL)
    raise TimeoutError(f"{what} not within {READY_WITHIN} s")


def rule_expr(rules_file: Path, alertname: str) -> str:
    doc = yaml.safe_load(rules_file.read_text(encoding="utf-8"))
    return next(
        str(r["expr"]) for g in doc["groups"] for r in g["rules"] if r.get("alert") == alertname
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    for binary in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            pytest.skip(f"Debian's {binary} is not installed")
    tmp = tmp_path_factory.mktemp("prometheus")
    rules = fast_rules(RULES, tmp / "rules-fast.yml")
    services = {
        "v1": await start_fake_service("v1", requests_per_second=400),
        "v2": await start_fake_service("v2", requests_per_second=200),
        "v3": await start_fake_service("v3", requests_per_second=0),
    }
    services["v1"].set_error_ratio(0.005)  # under the shipped rule's lowest level, 1 %
    services["v2"].set_error_ratio(0.10)
    try:
        async with running_alertmanager(ALERTMANAGER_YML, tmp) as am, running_prometheus(
            [s.metrics_url for s in services.values()], rules, tmp, alertmanager_url=am.url
        ) as prom:
            expr = rule_expr(rules, "HighErrorRate")
            value_expr = re.sub(r">\s*[0-9.]+\s*$", "", expr.strip())

            async def scraped() -> bool:
                return await prom.targets_up() == len(services)

            async def has_rates() -> bool:
                found = {s["metric"].get("version") for s in await prom.query(value_expr)}
                return found >= set(services)  # v3's is NaN, but present

            await _until("all scrape targets up", scraped)
            await _until("an error rate for every version", has_rates)
            yield World(prom, am, PrometheusSettings(url=prom.url), expr, services)
    finally:
        for s in services.values():
            await s.stop()
