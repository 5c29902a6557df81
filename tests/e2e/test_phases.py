"""The rollout phase read from the cluster, through the whole real chain.

Same parts as test_chain (Debian's Prometheus scraping fake pods with the shipped rules,
Debian's Alertmanager with the shipped routes, the receiver as `receiver serve` builds
it, the Kubernetes simulator, the fake Slack): the same HighErrorRate at 1.2 % rolls v2
back at 1 of 5 pods (week 1: 1 %) and does not at 3 of 5 (week 2: 5 %), where a
warning-level alert reaches Slack as a note and changes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sim.kube import KubeSim
from tests.e2e.test_chain import ADMIN, CANARY, CHANNEL, NS, STABLE, chain, ready, spec_replicas, texts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


async def decisions(url: str, kind: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "receiver_decisions_total" and s.labels.get("decision") == kind)


async def eventually(count: Callable[[], Awaitable[float]], timeout: float) -> None:  # noqa: ASYNC109
    """Poll the receiver's /metrics until ``count`` is positive (it has no event to wait on)."""
    async with asyncio.timeout(timeout):
        for _ in itertools.count():
            if await count() >= 1:
                return
            await asyncio.sleep(0.2)


async def test_in_week_1_an_error_rate_of_1_2_percent_rolls_back_and_says_week_1(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    assert (spec_replicas(kube_sim, CANARY), spec_replicas(kube_sim, STABLE)) == (1, 4)  # week 1
    async with chain(kube_sim, kubeconfig_path, tmp_path, mute=False) as c:
        c.v2.set_error_ratio(0.012)
        await c.prom.wait_for_alert("HighErrorRate", labels={"version": "v2"}, timeout=40)
        await c.sim.wait_for(lambda: spec_replicas(c.sim, CANARY) == 0 and ready(c.sim, STABLE) == 5, timeout=60)
        await c.slack.wait_for(lambda: "rolled back" in texts(c.slack.messages(CHANNEL)).lower(), timeout=30)
        parent = next(m for m in c.slack.messages(CHANNEL) if not m.text.startswith("Warning for"))
        assert "in week 1 (canary 1 of 5)" in texts([parent])
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{c.rx.url}/rollbacks", headers={"Authorization": f"Bearer {ADMIN}"}) as resp,
        ):
            [listed] = (await resp.json())["rollbacks"]
        assert listed["rollout_phase"] == "week 1 (canary 1 of 5)"
        assert "week 1's 1 % threshold of rule error-rate" in listed["reason"]


async def test_in_week_2_the_same_error_rate_changes_nothing_and_a_warning_is_only_told(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    kube_sim.scale_as(NS, CANARY, 3, field_manager="kubectl")  # the rollout's week 2: v2 at 3 of 5
    kube_sim.scale_as(NS, STABLE, 2, field_manager="kubectl")
    async with chain(kube_sim, kubeconfig_path, tmp_path, mute=False) as c:
        c.v2.set_error_ratio(0.012)
        c.v2.set_cpu(0.75)  # above the 70 % warning level (week 1's rollback level), below week 2's 90 %
        await c.prom.wait_for_alert("HighErrorRate", labels={"version": "v2"}, timeout=40)
        await c.prom.wait_for_alert("CPUUsageWarning", labels={"version": "v2"}, timeout=40)
        await c.slack.wait_for(lambda: "warning for finance-service" in texts(c.slack.messages(CHANNEL)).lower(),
                               timeout=40)
        # the rollback alerts reached the receiver and were judged by week 2's levels
        await eventually(lambda: decisions(c.rx.url, "no_rule_matched"), timeout=40)
        note = texts(c.slack.messages(CHANNEL))
        assert "week 2 (canary 3 of 5)" in note
        assert "CPU" in note and "nothing is changed for a warning" in note.lower()
        assert await decisions(c.rx.url, "warned") >= 1
        assert await decisions(c.rx.url, "roll_back") == 0
        assert (spec_replicas(c.sim, CANARY), spec_replicas(c.sim, STABLE)) == (3, 2)
        assert not [r for r in c.sim.requests if r.method in ("PATCH", "PUT") and "/deployments/" in r.path]
