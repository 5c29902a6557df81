"""Prometheus before and after acting, with real parts: Debian's Prometheus scraping the
fake finance-service pods, the receiver as `receiver serve` builds it, the Kubernetes
simulator and the fake Slack over real HTTP.

Alertmanager is left out on purpose: the webhook is posted as Alertmanager sends it,
with the rule's expression in its generatorURL, so each test controls exactly which
alert arrives when; what is under test is what the receiver asks Prometheus and what
it does with the answers. Recovery windows are seconds long (config), polling bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml

from receiver.cli.serve import RunningReceiver, start_receiver
from receiver.domain.rollback import RollbackRecord
from sim.fake_service import FakeServiceHandle, start_fake_service
from sim.kube import KubeSim
from sim.monitoring import Prometheus, running_prometheus
from sim.slack import FakeSlack, Msg
from tests.e2e.rules_fast import RULES, fast_rules

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

NS, STABLE, CANARY = "finance", "finance-service-v1", "finance-service-v2"
CHANNEL, CHANNEL_ID = "#rollbacks", "C0ROLLBACKS"
WINDOW = 2.0  # seconds of health that count as recovered (the watch lasts twice that)
#: HighErrorRate's shape, 5 s windows over 1 s scrapes, at the weeks-2-4 level.
ERROR_RATE = ('sum by (service, version) (rate(http_requests_total{code=~"5.."}[5s]))\n'
              '  / sum by (service, version) (rate(http_requests_total[5s]))\n> 0.05')


def spec_replicas(sim: KubeSim, name: str) -> int:
    return int(((sim.get("deployments", NS, name) or {}).get("spec") or {}).get("replicas", 0))


def texts(msgs: list[Msg]) -> str:
    return html.unescape("\n".join(m.text for m in msgs))


@dataclass
class World:
    sim: KubeSim
    slack: FakeSlack
    rx: RunningReceiver
    prom: Prometheus
    v1: FakeServiceHandle
    v2: FakeServiceHandle
    token: str
    stop_prometheus: contextlib.AsyncExitStack

    async def alert(self, *, expr: str = ERROR_RATE, value: str = "0.07", generator_url: str | None = None,
                    starts_at: datetime | None = None) -> dict[str, Any]:
        """POST one firing HighErrorRate for v2, as Alertmanager would; the JSON answer."""
        url = generator_url if generator_url is not None else f"{self.prom.url}/graph?g0.expr={quote(expr)}&g0.tab=1"
        labels = {"alertname": "HighErrorRate", "service": "finance-service", "version": "v2",
                  "severity": "critical"}
        payload = {
            "version": "4", "groupKey": '{}:{alertname="HighErrorRate"}', "truncatedAlerts": 0,
            "status": "firing", "receiver": "rollback-receiver", "groupLabels": {"alertname": "HighErrorRate"},
            "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
            "alerts": [{
                "status": "firing", "labels": labels, "annotations": {"value": value},
                "startsAt": (starts_at or datetime.now(UTC)).isoformat(), "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": url, "fingerprint": secrets.token_hex(8),
            }],
        }
        async with aiohttp.ClientSession() as http, http.post(
            f"{self.rx.url}/webhook", json=payload, headers={"Authorization": f"Bearer {self.token}"}
        ) as resp:
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())

    async def recovered_record(self) -> RollbackRecord:
        """The rollback's record once its recovery outcome is stored in the Lease."""
        async def settled() -> RollbackRecord | None:
            for r in await self.rx.executor.list_rollbacks():
                if r.recovery is not None and r.recovery.outcome.finished:
                    return r
            return None

        for _ in range(200):  # bounded: the watch ends at most 2 windows after the rollback
            if (found := await settled()) is not None:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError("no recovery outcome recorded")

    def thread_texts(self) -> str:
        parents = [m for m in self.slack.messages(CHANNEL) if m.thread_ts is None]
        return texts([r for p in parents for r in self.slack.thread(CHANNEL, p.ts)])


async def _rates_settled(prom: Prometheus, expected: dict[str, float]) -> None:
    """Until Prometheus' 5 s error rate of each version reads what its pods serve: the
    window must no longer hold the seconds before the ratios were set (a blend that can sit
    on the other side of the 5 % threshold). Polls an outside process, bounded."""
    value = ERROR_RATE.rsplit(">", 1)[0]
    seen: dict[str, float] = {}
    for _ in range(300):
        seen = {str(s["metric"].get("version")): float(s["value"][1]) for s in await prom.query(value)}
        if all(v in seen and abs(seen[v] - want) <= max(0.2 * want, 0.005) for v, want in expected.items()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"Prometheus' error rates never settled on {expected}: {seen}")


@contextlib.asynccontextmanager
async def world(kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path, *, v1_errors: float,
                v2_errors: float, v1_after_rollback: float | None = None) -> AsyncIterator[World]:
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus is not installed")
    v1 = await start_fake_service("v1", requests_per_second=400)
    v2 = await start_fake_service("v2", requests_per_second=100)
    v1.set_error_ratio(v1_errors)
    v2.set_error_ratio(v2_errors)
    slack = FakeSlack(channels={CHANNEL: CHANNEL_ID})
    await slack.start()
    prom_stack = contextlib.AsyncExitStack()
    rx: RunningReceiver | None = None

    async def v2_follows_the_cluster() -> None:
        """v2 takes traffic only while its Deployment has replicas; a shared cause may then hit v1."""
        await kube_sim.wait_for(lambda: spec_replicas(kube_sim, CANARY) == 0, timeout=100)
        v2.set_serving(False)
        if v1_after_rollback is not None:
            v1.set_error_ratio(v1_after_rollback)

    follower = asyncio.create_task(v2_follows_the_cluster())
    try:
        rules = fast_rules(RULES, tmp_path / "rules.yml")
        prom = await prom_stack.enter_async_context(running_prometheus([v1.metrics_url, v2.metrics_url], rules,
                                                                       tmp_path))
        await _rates_settled(prom, {"v1": v1_errors, "v2": v2_errors})
        cfg = {
            "settings": {"recovery_window_seconds": WINDOW},
            "rules": [{"name": "error-rate", "matchers": ['alertname="HighErrorRate"'], "threshold": 0.05,
                       "unit": "ratio"}],
            "targets": [{"name": "finance-service", "namespace": NS, "matchers": ['service="finance-service"'],
                         "stable": STABLE, "canary": CANARY, "replicas": 5}],
            "slack": {"mode": "bot", "api_url": slack.api_url, "default_channel": CHANNEL,
                      "oncall_mention": "<!here>"},
            "prometheus": {"url": prom.url, "decision_wait_seconds": 2},
        }
        cfg_path = tmp_path / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        token = secrets.token_urlsafe(16)
        env = {"RECEIVER_WEBHOOK_TOKEN": token, "SLACK_BOT_TOKEN": slack.token}
        rx = await start_receiver(cfg_path, kubeconfig=kubeconfig_path, identity="e2e", env=env)
        yield World(kube_sim, slack, rx, prom, v1, v2, token, prom_stack)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await follower
        if rx is not None:
            await rx.stop(grace=5)
        await prom_stack.aclose()
        await v1.stop()
        await v2.stop()
        await slack.stop()


async def test_a_rollback_that_helped_is_confirmed_recovered_in_its_thread_and_record(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    async with world(kube_sim, kubeconfig_path, tmp_path, v1_errors=0.005, v2_errors=0.07) as w:
        answer = await w.alert()
        assert answer["decisions"][0]["decision"] == "roll_back"
        assert "the stable v1 is healthy" in answer["decisions"][0]["reason"]
        record = await w.recovered_record()
        assert record.recovery is not None
        assert record.recovery.outcome.value == "recovered"
        assert record.recovery.message.startswith("recovered: HighErrorRate ")
        assert f"on {STABLE} for 2 s" in record.recovery.message
        await w.slack.wait_for(lambda: "recovered: HighErrorRate" in w.thread_texts(), timeout=10)
        assert "NOT recovered" not in texts(w.slack.messages(CHANNEL))
        assert w.rx.metrics.value("receiver_recovery_total", target="finance-service", outcome="recovered") == 1
        assert w.rx.metrics.value("receiver_alert_to_recovered_seconds_count") == 1


async def test_a_rollback_that_did_not_help_is_broadcast_as_not_recovered_with_the_on_call_mention(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    async with world(kube_sim, kubeconfig_path, tmp_path, v1_errors=0.005, v2_errors=0.07,
                     v1_after_rollback=0.5) as w:  # clearly sick: the rate window still holds the old 0.5 %
        await w.alert()
        record = await w.recovered_record()
        assert record.recovery is not None and record.recovery.outcome.value == "not_recovered"
        assert f"on {STABLE}" in record.recovery.message
        assert "the new version was probably not the cause" in record.recovery.message
        top = await w.slack.wait_for(
            lambda: [m for m in w.slack.messages(CHANNEL) if m.reply_broadcast], timeout=10)
        assert re.match(r"<!here> NOT recovered: HighErrorRate still [0-9.]+ % on finance-service-v1 ", top[0].text)
        assert w.rx.metrics.value("receiver_recovery_total", target="finance-service", outcome="not_recovered") == 1


async def test_a_stable_as_sick_as_the_canary_is_not_rolled_back_and_pages(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    async with world(kube_sim, kubeconfig_path, tmp_path, v1_errors=0.07, v2_errors=0.07) as w:
        answer = await w.alert()
        decision = answer["decisions"][0]
        assert decision["decision"] == "not_canary"
        # both measured near 7 % (Prometheus' rate of a sampled 7 %: 6.98 % is as sick)
        assert re.search(r"v1: [67](\.[0-9]+)? % \(> 5 %\), v2: [67](\.[0-9]+)? % \(> 5 %\)", decision["reason"])
        assert answer["rollbacks"] == []
        page = await w.slack.wait_for(lambda: w.slack.messages(CHANNEL), timeout=10)
        assert re.match(r"<!here> v1 and v2 both sick on HighErrorRate \(v1 [67](\.[0-9]+)? % \(> 5 %\)",
                        html.unescape(page[0].text))
        assert "rolling back finance-service would not help" in html.unescape(page[0].text)
        assert spec_replicas(w.sim, CANARY) == 1 and spec_replicas(w.sim, STABLE) == 4
        assert not [r for r in w.sim.requests if r.method == "PATCH"]
        assert w.rx.metrics.value("receiver_decisions_total", target="finance-service", decision="not_canary") == 1


async def test_prometheus_down_during_the_window_ends_as_unknown_with_the_reason(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    async with world(kube_sim, kubeconfig_path, tmp_path, v1_errors=0.005, v2_errors=0.07) as w:
        await w.alert()
        await w.sim.wait_for(lambda: spec_replicas(w.sim, CANARY) == 0, timeout=20)
        await w.stop_prometheus.aclose()
        record = await w.recovered_record()
        assert record.recovery is not None and record.recovery.outcome.value == "unknown"
        assert record.recovery.message.startswith("unknown: Prometheus could not answer: no answer from Prometheus")
        await w.slack.wait_for(lambda: "unknown: Prometheus could not answer" in w.thread_texts(), timeout=10)
        assert w.rx.metrics.value("receiver_recovery_total", target="finance-service", outcome="unknown") == 1


async def test_an_alert_without_a_prometheus_expression_still_rolls_back_and_says_the_recovery_is_unknown(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    async with world(kube_sim, kubeconfig_path, tmp_path, v1_errors=0.005, v2_errors=0.07) as w:
        answer = await w.alert(generator_url="http://vmalert:8880/vmalert/alert?group_id=1")
        decision = answer["decisions"][0]
        assert decision["decision"] == "roll_back"
        assert "not compared with the stable: generatorURL" in decision["reason"]
        record = await w.recovered_record()
        assert record.recovery is not None and record.recovery.outcome.value == "unknown"
        assert "has no g0.expr parameter" in record.recovery.message
        assert spec_replicas(w.sim, CANARY) == 0


async def test_an_expression_with_no_series_rolls_back_as_today_and_the_recovery_is_unknown(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    async with world(kube_sim, kubeconfig_path, tmp_path, v1_errors=0.005, v2_errors=0.07) as w:
        answer = await w.alert(expr='sum by (service, version) (rate(no_such_metric_total[5s])) > 0.05')
        decision = answer["decisions"][0]
        assert decision["decision"] == "roll_back"
        assert "not compared with the stable: v1 has no series" in decision["reason"]
        record = await w.recovered_record()
        assert record.recovery is not None and record.recovery.outcome.value == "unknown"
        assert record.recovery.message == f"unknown: HighErrorRate on {STABLE}: no series"


async def test_an_alert_that_started_before_the_canary_was_last_scaled_is_named_so_and_still_acts(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    async with world(kube_sim, kubeconfig_path, tmp_path, v1_errors=0.005, v2_errors=0.07) as w:
        answer = await w.alert(starts_at=datetime.now(UTC) - timedelta(hours=1))
        decision = answer["decisions"][0]
        assert decision["decision"] == "roll_back"  # settings.alerts_before_phase_may_trigger defaults to true
        assert f"the alert started before {CANARY} last changed replicas" in decision["reason"]


async def test_prometheus_down_at_decision_time_rolls_back_within_the_bound_and_says_why(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    async with world(kube_sim, kubeconfig_path, tmp_path, v1_errors=0.005, v2_errors=0.07) as w:
        await w.stop_prometheus.aclose()
        answer = await w.alert()  # the webhook answers after at most decision_wait_seconds (2 s) of asking
        decision = answer["decisions"][0]
        assert decision["decision"] == "roll_back"
        assert "not compared with the stable: no answer from Prometheus within 2 s" in decision["reason"]
        await w.sim.wait_for(lambda: spec_replicas(w.sim, CANARY) == 0, timeout=20)
        record = await w.recovered_record()
        assert record.recovery is not None and record.recovery.outcome.value == "unknown"
