"""Notifiers: what the service and executor call to tell people, and how to build one.

``make_notifier`` picks the delivery from ``slack.mode``: "bot" (Web API: a parent per
rollback updated in place, its timeline threaded, failures broadcast), "webhook" (an
incoming webhook: one message per event), "console" (readable lines on stdout, the
demo's mode) or "off". Every mode is fed through a bounded queue by one worker
(receiver/notify/base.py), so a slow or absent Slack never delays a rollback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from receiver.core.rollback import RollbackRecord, Step
from receiver.metrics import SLACK_MESSAGES
from receiver.notify.base import ConfigProvider, DeliveryPolicy, OnThread, QueuedNotifier
from receiver.notify.bot import SlackBotNotifier
from receiver.notify.console import ConsoleNotifier
from receiver.notify.webhook import SlackWebhookNotifier

if TYPE_CHECKING:
    from receiver.config import SlackSettings, Target
    from receiver.core.decisions import Decision

__all__ = [
    "ConsoleNotifier",
    "DeliveryPolicy",
    "Notifier",
    "NullNotifier",
    "QueuedNotifier",
    "SlackBotNotifier",
    "SlackWebhookNotifier",
    "make_notifier",
]

log = structlog.get_logger("receiver.slack")


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


def _secret(file: Path | None, env_name: str, env: Mapping[str, str]) -> tuple[str, str]:
    """(value, where it came from) from a file or an environment variable; value may be ""."""
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip(), f"slack file {file}"
        except OSError as e:
            log.error("cannot read slack secret file", path=str(file), error=e.strerror)
            return "", f"slack file {file}"
    return env.get(env_name, "").strip(), f"environment variable {env_name}"


def make_notifier(
    settings: SlackSettings,
    secrets_env: Mapping[str, str] | None = None,
    on_thread: OnThread | None = None,
    *,
    config: ConfigProvider | None = None,
    policy: DeliveryPolicy | None = None,
) -> Notifier:
    """Build the notifier for ``settings.mode``.

    ``on_thread(rollback_id, channel_id, ts)`` is awaited once a rollback's parent is
    posted, so the executor can keep the thread with the rollback. ``config`` (optional)
    gives per-target channels, runbook/dashboard links and the live on-call mention;
    without it every message goes to slack.default_channel. A bot or webhook mode without
    its secret falls back to the console, loudly, rather than stopping the receiver.
    """
    env = os.environ if secrets_env is None else secrets_env
    if settings.mode == "off":
        return NullNotifier()
    if settings.mode == "bot":
        token, source = _secret(settings.token_file, settings.token_env, env)
        if token:
            log.info("slack notifications via the Web API", api_url=settings.api_url, token_from=source,
                     default_channel=settings.default_channel)
            return SlackBotNotifier(settings, token, source, on_thread=on_thread, config=config, policy=policy)
        SLACK_MESSAGES.labels("auth.test", "no_token").inc()
        log.error("slack.mode is bot but there is no bot token; printing to the console instead",
                  fix=f"put the xoxb- token in {source}")
    elif settings.mode == "webhook":
        url, source = _secret(settings.webhook_url_file, settings.webhook_url_env, env)
        if url:
            log.info("slack notifications via an incoming webhook", url_from=source)
            return SlackWebhookNotifier(settings, url, source, config=config, policy=policy)
        SLACK_MESSAGES.labels("webhook", "no_url").inc()
        log.error("slack.mode is webhook but there is no webhook URL; printing to the console instead",
                  fix=f"put the https://hooks.slack.com/... URL in {source}")
    return ConsoleNotifier(settings, config=config, policy=policy)
