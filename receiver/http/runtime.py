"""What the HTTP handlers need from the running receiver, under one typed app key.

Its own module so that the app factory, the handlers and the health pages all import it
downwards (no import loop through the factory).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from receiver.actions import Actions
from receiver.config.credentials import RejectionLog
from receiver.config.store import ConfigStore
from receiver.domain.rollback import RollbackRecord
from receiver.intake.deliveries import Service
from receiver.metrics import Metrics


@dataclass
class Runtime:
    """What the handlers need; built by serve.py (real adapters) or a test."""

    store: ConfigStore
    service: Service
    list_rollbacks: Callable[[], Awaitable[list[RollbackRecord]]]
    kube_check: Callable[[], Awaitable[str | None]]  # None = reachable, else the error
    watch_check: Callable[[], str | None] = lambda: None  # None = target watches current
    running_rollbacks: Callable[[], int] = lambda: 0
    actions: Actions | None = None  # mutes and the breaker (None: those routes answer 503)
    started_monotonic: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.store.metrics is not self.service.metrics:  # /metrics would miss half the counts
            raise ValueError("the config store and the service must count into the same Metrics")

    @property
    def metrics(self) -> Metrics:
        """The process's collectors, served at /metrics (serve.py gives every part the same)."""
        return self.service.metrics


RUNTIME = web.AppKey("runtime", Runtime)
REJECTIONS = web.AppKey("rejections", RejectionLog)
