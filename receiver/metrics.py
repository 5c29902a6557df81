"""Prometheus metrics, defined once so every module counts into the same names.

Conventions an SRE's dashboards already assume: the process and platform collectors
(``process_resident_memory_bytes``, ``python_info``, ...), ``receiver_build_info``, no
``_created`` series, durations in seconds, and label sets created at start (and on each
reload) for every configured target, so a panel shows 0 rather than "no data".
"""

from __future__ import annotations

import platform
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from receiver import __version__
from receiver.domain.decisions import DecisionKind

# `_created` series double the number of series and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

BUILD_INFO = Gauge(
    "receiver_build_info", "Always 1; the version running and its Python.", ["version", "python"], registry=REGISTRY
)
BUILD_INFO.labels(__version__, platform.python_version()).set(1)

WEBHOOKS = Counter("receiver_webhooks_total", "Webhook deliveries by HTTP outcome.", ["outcome"], registry=REGISTRY)
DECISIONS = Counter(
    "receiver_decisions_total", "Decisions per target by kind.", ["target", "decision"], registry=REGISTRY
)
ALERTS = Counter(
    "receiver_alerts_total",
    "Alerts received, by the decision they led to and why (above_threshold, below_threshold, "
    "no_value, no_threshold, no_rule, resolved, ...).",
    ["decision", "reason"],
    registry=REGISTRY,
)
ROLLBACK_OUTCOMES = ("succeeded", "failed")
ROLLBACKS_STARTED = Counter(
    "receiver_rollbacks_started_total",
    "Rollbacks started (not counting one resumed after a restart).",
    ["target"],
    registry=REGISTRY,
)
ROLLBACKS_FINISHED = Counter(
    "receiver_rollbacks_finished_total",
    "Rollbacks finished, by outcome: succeeded (stable verified serving) or failed.",
    ["target", "outcome"],
    registry=REGISTRY,
)
ROLLBACK_DURATION = Histogram(
    "receiver_rollback_duration_seconds",
    "From start to verified (or failed).",
    ["target", "outcome"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
ROLLBACKS_RUNNING = Gauge("receiver_rollbacks_running", "Rollbacks in progress in this replica.", registry=REGISTRY)
KUBE_RETRIES = Counter(
    "receiver_kube_retries_total", "Kubernetes API calls retried, by reason.", ["reason"], registry=REGISTRY
)
CONFIG_RELOADS = Counter("receiver_config_reloads_total", "Config reloads by result.", ["result"], registry=REGISTRY)
CONFIG_LAST_RELOAD_SUCCESS = Gauge(
    "receiver_config_last_reload_successful", "1 if the last reload succeeded.", registry=REGISTRY
)
SLACK_MESSAGES = Counter(
    "receiver_slack_messages_total",
    "Slack API calls by method and result.",
    ["method", "result"],
    registry=REGISTRY,
)
SLACK_QUEUE_DROPPED = Counter(
    "receiver_slack_dropped_total", "Notifications dropped (queue full or Slack down).", registry=REGISTRY
)
SLACK_UP = Gauge(
    "receiver_slack_up",
    "0 while Slack refuses or cannot be reached for good (bad token, missing channel, down), else 1.",
    registry=REGISTRY,
)
SLACK_UP.set(1)  # no failure known (also when slack.mode is console or off)
REQUEST_LATENCY = Histogram(
    "receiver_http_request_duration_seconds",
    "HTTP request latency by route.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
FIGHTS = Counter(
    "receiver_fights_detected_total",
    "Canary scaled back up by someone else after a rollback.",
    ["target", "manager"],
    registry=REGISTRY,
)
TARGET_MISCONFIGURED = Gauge(
    "receiver_target_misconfigured",
    "1 while a target's canary or stable Deployment does not exist (it cannot be rolled back).",
    ["target"],
    registry=REGISTRY,
)
CACHE_BYTES = Gauge(
    "receiver_cache_bytes",
    "Bytes held by an in-memory cache (repeat: answers to byte-identical re-sends; told: "
    "decisions already posted to Slack), each kept under its budget.",
    ["cache"],
    registry=REGISTRY,
)

WEBHOOK_OUTCOMES = (
    "accepted", "unauthorized", "too_large", "invalid", "intent_not_recorded", "misconfigured", "not_confirmed",
)
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOKS.labels(_outcome)
for _result in ("success", "failure"):
    CONFIG_RELOADS.labels(_result)


def init_target_labels(targets: Iterable[str]) -> None:
    """Create every per-target series at 0 (at start and on reload), so dashboards show 0."""
    for target in targets:
        ROLLBACKS_STARTED.labels(target)
        for outcome in ROLLBACK_OUTCOMES:
            ROLLBACKS_FINISHED.labels(target, outcome)
            ROLLBACK_DURATION.labels(target, outcome)
        for kind in DecisionKind:
            DECISIONS.labels(target, kind.value)
