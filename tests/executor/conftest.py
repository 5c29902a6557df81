"""Helpers for executor tests: a config for the seeded finance-service, executors that
are closed after each test, decisions as the webhook layer would make them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient

from receiver.domain.decisions import Decision, DecisionKind
from receiver.domain.rollback import RollbackRecord, Step
from receiver.domain.settings import Config, parse_config
from receiver.kube import RetryPolicy
from receiver.metrics import Metrics
from receiver.rollback.executor import Executor

NS = "finance"
STABLE = "finance-service-v1"
CANARY = "finance-service-v2"
FAST_RETRY = RetryPolicy(base_seconds=0.005, cap_seconds=0.05, give_up_after_seconds=20)


def make_config(target: dict[str, Any] | None = None, **settings: Any) -> Config:
    """One target, finance-service, full count 5; settings (and target keys) override."""
    import yaml

    body = {
        "settings": {"lease_duration_seconds": 3, "verification_timeout_seconds": 20, **settings},
        "rules": [{"name": "error-rate", "matchers": ['alertname="HighErrorRate"'],
                   "threshold": 0.05, "unit": "ratio"}],
        "targets": [{"name": "finance-service", "namespace": NS,
                     "matchers": ['service="finance-service"'],
                     "stable": STABLE, "canary": CANARY, "replicas": 5, **(target or {})}],
    }
    return parse_config(yaml.safe_dump(body))


def decision(reason: str = "error-rate: 7.2 % > 5 %") -> Decision:
    return Decision(target="finance-service", kind=DecisionKind.ROLL_BACK, reason=reason,
                    rule="error-rate", value=0.072, threshold=0.05)


class Seen:
    """Collects on_change calls: every step and every progress snapshot."""

    def __init__(self) -> None:
        self.records: list[RollbackRecord] = []
        self.steps: list[Step] = []
        self.hooks: list[Callable[[RollbackRecord, Step | None], None]] = []

    def __call__(self, record: RollbackRecord, step: Step | None) -> None:
        self.records.append(record)
        if step is not None:
            self.steps.append(step)
        for hook in list(self.hooks):
            hook(record, step)


class Ticks:
    """A monotonic clock the test moves by hand: the local time by which another
    holder's Lease expires (client-go's rule), so no test sleeps a lease duration."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeExecutor = Callable[..., Executor]


@pytest.fixture
async def make_executor(kube_api: ApiClient, metrics: Metrics) -> AsyncIterator[MakeExecutor]:
    """Executors counting into this test's ``metrics`` and closed after it."""
    made: list[Executor] = []

    def make(identity: str = "receiver-a", config: Config | None = None,
             api: ApiClient | None = None, **kwargs: Any) -> Executor:
        cfg = config or make_config()
        kwargs.setdefault("metrics", metrics)
        ex = Executor(api or kube_api, lambda: cfg, identity, retry=FAST_RETRY, **kwargs)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        await ex.close(timeout=1)

