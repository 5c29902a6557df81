"""Instant queries against Debian's real Prometheus scraping the fake finance-service."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Iterable

import pytest

from receiver.domain.prometheus_settings import PrometheusSettings
from receiver.domain.promql import expr_from_generator_url, for_version, split_threshold
from receiver.domain.readings import Verdict, judge
from receiver.prometheus.client import PrometheusClient
from receiver.prometheus.errors import PrometheusQueryError, PrometheusUnavailable
from receiver.prometheus.results import Sample
from tests.prometheus.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

#: A guard so a hanging client fails the test instead of blocking the run.
GUARD = 10.0


def by_version(samples: Iterable[Sample]) -> dict[str, float]:
    return {s.label("version"): s.value for s in samples}


async def test_the_error_rate_expression_returns_each_versions_own_value(world: World) -> None:
    split = split_threshold(world.error_rate_rule)
    assert split is not None and split.threshold == 0.01
    async with PrometheusClient(world.settings) as prom:
        result = await prom.query(split.value, wait=5)
    values = by_version(result.samples)
    assert values["v1"] == pytest.approx(0.005, abs=0.003)
    assert values["v2"] == pytest.approx(0.10, abs=0.01)
    assert {s.label("service") for s in result.samples} == {"finance-service"}


async def test_the_rules_own_filtered_expression_returns_only_the_version_above_it(world: World) -> None:
    async with PrometheusClient(world.settings) as prom:
        result = await prom.query(world.error_rate_rule, wait=5)
    assert list(by_version(result.samples)) == ["v2"]


async def test_the_same_expression_for_the_stable_version_returns_only_the_stable(world: World) -> None:
    split = split_threshold(world.error_rate_rule)
    assert split is not None
    async with PrometheusClient(world.settings) as prom:
        stable = await prom.query(for_version(split.value, "v1"), wait=5)
        canary = await prom.query(for_version(split.value, "v2"), wait=5)
    assert list(by_version(stable.samples)) == ["v1"]
    assert by_version(stable.samples)["v1"] == pytest.approx(0.005, abs=0.003)
    assert list(by_version(canary.samples)) == ["v2"]


async def test_a_version_pinned_in_a_selector_is_evaluated_for_the_other_version(world: World) -> None:
    pinned = (
        'sum(rate(http_requests_total{code="500", version="v2"}[5s]))'
        ' / sum(rate(http_requests_total{version="v2"}[5s]))'
    )
    async with PrometheusClient(world.settings) as prom:
        v2 = await prom.query(pinned, wait=5)
        v1 = await prom.query(for_version(pinned, "v1"), wait=5)
    assert v2.samples[0].value == pytest.approx(0.10, abs=0.01)
    assert v1.samples[0].value == pytest.approx(0.005, abs=0.003)


async def test_a_query_that_matches_no_series_returns_an_empty_vector(world: World) -> None:
    async with PrometheusClient(world.settings) as prom:
        result = await prom.query('http_requests_total{version="v9"}', wait=5)
    assert result.result_type == "vector"
    assert result.empty
    assert result.with_label("version", "v9") == ()


async def test_a_version_without_traffic_has_an_undefined_error_rate_not_zero(world: World) -> None:
    split = split_threshold(world.error_rate_rule)
    assert split is not None
    async with PrometheusClient(world.settings) as prom:
        result = await prom.query(for_version(split.value, "v3"), wait=5)
    (idle,) = result.with_label("version", "v3")
    assert math.isnan(idle.value)
    assert not idle.defined


async def test_infinite_values_are_parsed_as_infinities(world: World) -> None:
    async with PrometheusClient(world.settings) as prom:
        errors_per_zero = await prom.query('sum by (version) (rate(http_requests_total{code="500"}[5s])) / 0', wait=5)
        minus = await prom.query("-1/0", wait=5)
        nan = await prom.query("0/0", wait=5)
    assert by_version(errors_per_zero.samples)["v2"] == math.inf
    assert errors_per_zero.with_label("version", "v2")[0].defined
    assert minus.result_type == "scalar" and minus.samples[0].value == -math.inf
    assert nan.result_type == "scalar" and math.isnan(nan.samples[0].value)


async def test_a_syntax_error_is_reported_in_prometheus_own_words(world: World) -> None:
    async with PrometheusClient(world.settings) as prom:
        with pytest.raises(PrometheusQueryError) as caught:
            await prom.query("sum(rate(http_requests_total[5s])", wait=5)
    assert caught.value.error_type == "bad_data"
    assert caught.value.status == 400
    assert "parse error" in caught.value.message
    assert "unclosed left parenthesis" in caught.value.reason


async def test_a_range_vector_is_refused_with_a_hint_instead_of_judged(world: World) -> None:
    async with PrometheusClient(world.settings) as prom:
        with pytest.raises(PrometheusQueryError, match="range vector"):
            await prom.query("http_requests_total[5s]", wait=5)
        with pytest.raises(PrometheusQueryError, match="string, not a number"):
            await prom.query('"hello"', wait=5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_prometheus_down_is_a_typed_error_after_retries_within_the_wait() -> None:
    settings = PrometheusSettings(url=f"http://127.0.0.1:{closed_port()}")
    async with PrometheusClient(settings) as prom, asyncio.timeout(GUARD):
        with pytest.raises(PrometheusUnavailable) as caught:
            await prom.query("up", wait=0.5)
    assert caught.value.attempts >= 2
    assert "no answer from Prometheus within 0.5 s" in caught.value.reason
    assert "Cannot connect" in caught.value.reason or "ClientConnector" in caught.value.reason


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A TCP listener that accepts and never answers: a Prometheus stuck in a long GC."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_a_prometheus_that_never_answers_cannot_hold_the_caller_past_its_wait(silent_server: str) -> None:
    settings = PrometheusSettings(url=silent_server, request_timeout_seconds=60)
    async with PrometheusClient(settings) as prom:
        # A caller that gave up on its own (the guard) is not the behaviour under test:
        # the client must give up first, at its 0.3 s bound, with its typed error.
        guard = asyncio.timeout(3)
        with pytest.raises(PrometheusUnavailable, match=r"within 0\.3 s"):
            async with guard:
                await prom.query("up", wait=0.3)
    assert not guard.expired()


async def test_a_caller_that_stops_waiting_stops_the_query_and_its_retries(silent_server: str) -> None:
    settings = PrometheusSettings(url=silent_server)
    async with PrometheusClient(settings) as prom:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await prom.query("up", wait=30)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # nothing left pending on the caller


async def test_the_expression_alertmanager_delivers_evaluates_to_the_canarys_value(world: World) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    urls: list[str] = []
    while not urls and asyncio.get_running_loop().time() < deadline:
        urls = [a["generatorURL"] for a in await world.alertmanager.alerts()
                if a["labels"].get("alertname") == "HighErrorRate"]
        if not urls:
            await asyncio.sleep(0.1)
    assert urls, "HighErrorRate never reached Alertmanager"
    expr = expr_from_generator_url(urls[0])
    # Prometheus links the rule's expression as it prints it (one line), not the file's text.
    assert expr == " ".join(world.error_rate_rule.split()).replace("( ", "(").replace(" )", ")")
    split = split_threshold(expr)
    assert split is not None
    async with PrometheusClient(world.settings) as prom:
        canary = await prom.query(for_version(split.value, "v2"), wait=5)
    assert by_version(canary.samples)["v2"] == pytest.approx(0.10, abs=0.01)


async def test_each_version_is_judged_by_the_rules_own_threshold(world: World) -> None:
    split = split_threshold(world.error_rate_rule)
    assert split is not None
    verdicts = {}
    async with PrometheusClient(world.settings) as prom:
        for version in ("v1", "v2", "v3", "v9"):
            result = await prom.query(for_version(split.value, version), wait=5)
            values = [s.value for s in result.with_label("version", version)]
            verdicts[version] = judge(values, split.threshold, split.op).verdict
    assert verdicts == {
        "v1": Verdict.CLEAR, "v2": Verdict.CROSSED, "v3": Verdict.NO_VALUE, "v9": Verdict.NO_SERIES,
    }
