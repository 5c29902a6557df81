"""Notifiers: what the service and executor call to tell people, and how to build one.

``make_notifier`` picks the delivery from ``slack.mode``: "bot" (Web API: a parent per
rollback updated in place, its timeline threaded, failures broadcast), "webhook" (an
incoming webhook: one message per event), "console" (readable lines on stdout, the
demo's mode) or "off". A bot without a token or a webhook without a URL is a configuration error
(``slack_credentials_problem``), not a quiet fallback. Every mode is fed through a bounded queue by one worker
(receiver/notify/base.py), so a slow or absent Slack never delays a rollback.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from receiver.domain.rollback import RollbackRecord, Step
from receiver.domain.settings import ConfigError
from receiver.metrics import Metrics
from receiver.notify.base import ConfigProvider, DeliveryPolicy, OnThread, QueuedNotifier
from receiver.notify.secrets import _secret, _settings_problem, slack_credentials_problem

if TYPE_CHECKING:
    from receiver.domain.decisions import Decision
    from receiver.domain.settings import SlackSettings, Target
    from receiver.notify.bot import SlackBotNotifier
    from receiver.notify.console import ConsoleNotifier
    from receiver.notify.webhook import SlackWebhookNotifier

__all__ = [
    "ConsoleNotifier",
    "DeliveryPolicy",
    "Notifier",
    "NullNotifier",
    "QueuedNotifier",
    "SlackBotNotifier",
    "SlackWebhookNotifier",
    "make_notifier",
    "slack_credentials_problem",
]

log = structlog.get_logger("receiver.notify.factory")

# Each mode's module (slack_sdk, rich) loads when that mode is built: `check-config` and
# a serve in one mode do not pay for the others.
_MODES = {"SlackBotNotifier": "bot", "ConsoleNotifier": "console", "SlackWebhookNotifier": "webhook"}


def __getattr__(name: str) -> Any:
    if name not in _MODES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"receiver.notify.{_MODES[name]}"), name)


class Notifier(Protocol):
    """What the service calls. The two event methods only enqueue: they never block."""

    def rollback_changed(self, record: RollbackRecord, step: Step | None = None) -> None: ...

    def decision(self, decision: Decision, target: Target, record: RollbackRecord | None = None) -> None: ...

    async def start(self) -> None: ...

    async def close(self, timeout: float) -> None: ...  # noqa: ASYNC109 - the agreed interface


class NullNotifier:
    """slack.mode: off. Outcomes are still in the logs, metrics, events and status API."""

    mode = "off"

    def rollback_changed(self, record: RollbackRecord, step: Step | None = None) -> None:
        return None

    def decision(self, decision: Decision, target: Target, record: RollbackRecord | None = None) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 - the agreed interface
        return None


def make_notifier(
    settings: SlackSettings,
    secrets_env: Mapping[str, str] | None = None,
    on_thread: OnThread | None = None,
    *,
    config: ConfigProvider | None = None,
    policy: DeliveryPolicy | None = None,
    metrics: Metrics | None = None,
) -> Notifier:
    """Build the notifier for ``settings.mode``.

    ``on_thread(rollback_id, channel_id, ts)`` is awaited once a rollback's parent is
    posted, so the executor can keep the thread with the rollback. ``config`` (optional)
    gives per-target channels, runbook/dashboard links and the live on-call mention;
    without it every message goes to slack.default_channel. A bot or webhook mode without
    its secret raises ConfigError (see slack_credentials_problem).
    """
    env = os.environ if secrets_env is None else secrets_env
    problem = _settings_problem(settings, env)
    if problem is not None:
        raise ConfigError(problem)
    if settings.mode == "off":
        return NullNotifier()
    if settings.mode == "bot":
        token, source, _ = _secret(settings.token_file, settings.token_env, env)
        log.info("slack_notifier_ready", mode="bot", api_url=settings.api_url, token_from=source,
                 default_channel=settings.default_channel)
        from receiver.notify.bot import SlackBotNotifier

        return SlackBotNotifier(settings, token, source, on_thread=on_thread, config=config, policy=policy,
                               metrics=metrics)
    if settings.mode == "webhook":
        url, source, _ = _secret(settings.webhook_url_file, settings.webhook_url_env, env)
        log.info("slack_notifier_ready", mode="webhook", url_from=source)
        from receiver.notify.webhook import SlackWebhookNotifier

        return SlackWebhookNotifier(settings, url, source, config=config, policy=policy,
                               metrics=metrics)
    from receiver.notify.console import ConsoleNotifier

    return ConsoleNotifier(settings, config=config, policy=policy, metrics=metrics)
