"""A watch that meets something unforeseen recovers, and says so while it cannot."""

from __future__ import annotations

import asyncio

from kubernetes_asyncio.client import ApiClient

from receiver.kube import Kube, Mirror, Obj
from receiver.kube.targets import TargetWatcher
from sim.kube import KubeSim
from tests.executor.conftest import CANARY, FAST_RETRY, NS, make_config

NOT_JSON = b'{"kind": "DeploymentList", "items": ['  # a body cut short by a proxy


async def test_a_list_answered_with_a_body_that_is_not_json_is_retried_and_watching_goes_on(
    kube_sim: KubeSim, kube_api: ApiClient,
) -> None:
    kube = Kube(kube_api, FAST_RETRY)
    kube_sim.faults.fail(verb="list", resource="deployments", status=200, body=NOT_JSON, times=2)
    mirror = Mirror(kube, "deployments", NS)
    scaled = asyncio.Event()

    def on_change(_kind: str, obj: Obj | None) -> None:
        if obj and obj["metadata"]["name"] == CANARY and obj["spec"]["replicas"] == 0:
            scaled.set()

    mirror.subscribe(on_change)
    mirror.start()
    try:
        await asyncio.wait_for(mirror.ready(), 5)
        assert mirror.get(CANARY) is not None
        await kube.scale_deployment(NS, CANARY, 0)
        await asyncio.wait_for(scaled.wait(), 5)
        assert mirror.problem() is None
    finally:
        await mirror.stop()


async def test_the_target_watcher_reports_a_watch_that_keeps_failing_until_it_recovers(
    kube_sim: KubeSim, kube_api: ApiClient,
) -> None:
    cfg = make_config()
    watcher = TargetWatcher(kube_api, lambda: cfg, kube=Kube(kube_api, FAST_RETRY))
    garbled = kube_sim.faults.fail(verb="list", resource="deployments", status=200,
                                   body=b"<html>502 Bad Gateway</html>")
    await watcher.start()
    try:
        await kube_sim.wait_for(lambda: watcher.healthy() is not None, timeout=5)
        problem = watcher.healthy()
        assert problem is not None
        assert f"deployments watch in {NS}" in problem and "InvalidResponse" in problem
        kube_sim.faults.failures.remove(garbled)
        await kube_sim.wait_for(lambda: watcher.healthy() is None, timeout=5)
        assert watcher.states()["finance-service"].canary_replicas == 1
    finally:
        await watcher.stop()
