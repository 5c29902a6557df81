"""Posting an Event that already exists is success, answered at once, never retried."""

from __future__ import annotations

import asyncio

from kubernetes_asyncio.client import ApiClient

from receiver.kube import Kube, Obj
from sim.kube import KubeSim
from tests.executor.conftest import FAST_RETRY, NS, STABLE


def _event(name: str) -> Obj:
    return {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": name, "namespace": NS},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "rollback-receiver.io/receiver",
        "reportingInstance": "receiver-a", "action": "Rollback", "reason": "RolledBack",
        "note": "rolled back", "type": "Normal",
        "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": NS,
                      "name": STABLE},
    }


async def test_an_event_posted_twice_is_created_once_and_the_second_post_is_not_retried(
    kube_sim: KubeSim, kube_api: ApiClient,
) -> None:
    kube = Kube(kube_api, FAST_RETRY)
    await kube.create_event(NS, _event("finance-service-v1.rollback-abc-succeeded"))
    kube_sim.requests.clear()

    await asyncio.wait_for(
        kube.create_event(NS, _event("finance-service-v1.rollback-abc-succeeded")), 2)

    posts = [r for r in kube_sim.requests if r.verb == "create" and r.resource == "events"]
    assert [r.status for r in posts] == [409]
    names = [e["metadata"]["name"] for e in kube_sim.list("events", NS)]
    assert names.count("finance-service-v1.rollback-abc-succeeded") == 1
