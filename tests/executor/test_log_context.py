"""Log lines about a rollback's Lease name the target and the rollback, wherever logged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog
from kubernetes_asyncio.client import ApiClient
from structlog.typing import EventDict, WrappedLogger

from receiver.kube import Kube, micro_time
from sim.kube import KubeSim
from tests.executor.conftest import FAST_RETRY, NS, MakeExecutor, decision, make_config

LEASE = "rollback-finance-service"


class Logged:
    """Captured log events, with a way to await one by name."""

    def __init__(self) -> None:
        self.events: list[EventDict] = []
        self._waiters: dict[str, asyncio.Event] = {}

    def __call__(self, _logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        self.events.append(dict(event))
        self._waiters.setdefault(str(event.get("event")), asyncio.Event()).set()
        return event

    async def wait(self, name: str) -> EventDict:
        await asyncio.wait_for(self._waiters.setdefault(name, asyncio.Event()).wait(), 10)
        return next(e for e in self.events if e.get("event") == name)


@pytest.fixture
def logged() -> Iterator[Logged]:
    seen = Logged()
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars, seen]
    ):
        yield seen


async def test_a_failed_lease_renewal_is_logged_with_its_target_and_rollback(
    kube_sim: KubeSim, make_executor: MakeExecutor, logged: Logged,
) -> None:
    cfg = make_config()
    ex = make_executor(config=cfg)
    record = await ex.claim(decision(), cfg.targets[0])
    assert record is not None
    kube_sim.faults.fail(verb="update", resource="leases", status=403)
    event = await logged.wait("lease_renew_failed")
    assert event["target"] == "finance-service"
    assert event["rollback_id"] == record.id
    kube_sim.faults.clear()


async def test_a_rollback_handed_over_to_another_replica_is_logged_with_its_id(
    kube_sim: KubeSim, kube_api: ApiClient, make_executor: MakeExecutor, logged: Logged,
) -> None:
    cfg = make_config()
    ex = make_executor(config=cfg)
    record = await ex.claim(decision(), cfg.targets[0])
    assert record is not None
    kube_sim.faults.latency(0.5, verb="patch", resource="deployments/scale")
    run = ex.start(record)
    await kube_sim.wait_for(lambda: any(r.verb == "patch" for r in kube_sim.requests))
    kube = Kube(kube_api, FAST_RETRY)  # replica b takes the Lease over
    lease = await kube.read_lease(NS, LEASE)
    lease["spec"].update(holderIdentity="receiver-b", renewTime=micro_time(datetime.now(UTC)))
    await kube.replace_lease(NS, LEASE, lease)
    await run
    event = await logged.wait("rollback_handed_over")
    assert event["rollback_id"] == record.id
    assert event["target"] == "finance-service"
