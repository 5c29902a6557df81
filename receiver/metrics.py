"""Prometheus metrics: one `Metrics` per process, handed to every part that counts.

Conventions an SRE's dashboards already assume: the process and platform collectors
(``process_resident_memory_bytes``, ``python_info``, ...), ``receiver_build_info``, no
``_created`` series, durations in seconds, and label sets created at start (and on each
reload) for every configured target, so a panel shows 0 rather than "no data".

Nothing here is module-level state: ``Metrics.create()`` builds the collectors on their
own registry, so two receivers in one process (tests, the demo) never count into each
other's series.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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

ROLLBACK_OUTCOMES = ("succeeded", "failed")
WEBHOOK_OUTCOMES = (
    "accepted", "unauthorized", "too_large", "invalid", "intent_not_recorded", "misconfigured", "not_confirmed",
)


@dataclass(frozen=True)
class Metrics:
    """Every collector the receiver exports, on one registry (served at /metrics)."""

    registry: CollectorRegistry
    build_info: Gauge
    webhooks: Counter
    decisions: Counter
    alerts: Counter
    rollbacks_started: Counter
    rollbacks_finished: Counter
    rollback_duration: Histogram
    rollbacks_running: Gauge
    kube_retries: Counter
    config_reloads: Counter
    config_last_reload_success: Gauge
    slack_messages: Counter
    slack_dropped: Counter
    slack_up: Gauge
    request_latency: Histogram
    fights: Counter
    target_misconfigured: Gauge
    cache_bytes: Gauge
    breaker_open: Gauge
    recoveries: Counter
    alert_to_recovered: Histogram
    # labelled histogram children of request_latency, resolved once per (route, method)
    timers: dict[tuple[str, str], Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def create(cls) -> Metrics:
        """A fresh set of collectors on a new registry (one per process, or per test)."""
        # `_created` series double the number of series and no dashboard reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        m = cls(
            registry=r,
            build_info=Gauge(
                "receiver_build_info", "Always 1; the version running and its Python.", ["version", "python"],
                registry=r,
            ),
            webhooks=Counter("receiver_webhooks_total", "Webhook deliveries by HTTP outcome.", ["outcome"], registry=r),
            decisions=Counter(
                "receiver_decisions_total", "Decisions per target by kind.", ["target", "decision"], registry=r
            ),
            alerts=Counter(
                "receiver_alerts_total",
                "Alerts received, by the decision they led to and why (above_threshold, below_threshold, "
                "no_value, no_threshold, no_rule, resolved, ...).",
                ["decision", "reason"],
                registry=r,
            ),
            rollbacks_started=Counter(
                "receiver_rollbacks_started_total",
                "Rollbacks started (not counting one resumed after a restart).",
                ["target"],
                registry=r,
            ),
            rollbacks_finished=Counter(
                "receiver_rollbacks_finished_total",
                "Rollbacks finished, by outcome: succeeded (stable verified serving) or failed.",
                ["target", "outcome"],
                registry=r,
            ),
            rollback_duration=Histogram(
                "receiver_rollback_duration_seconds",
                "From start to verified (or failed).",
                ["target", "outcome"],
                buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
                registry=r,
            ),
            rollbacks_running=Gauge("receiver_rollbacks_running", "Rollbacks in progress in this replica.", registry=r),
            kube_retries=Counter(
                "receiver_kube_retries_total", "Kubernetes API calls retried, by reason.", ["reason"], registry=r
            ),
            config_reloads=Counter(
                "receiver_config_reloads_total", "Config reloads by result.", ["result"], registry=r
            ),
            config_last_reload_success=Gauge(
                "receiver_config_last_reload_successful", "1 if the last reload succeeded.", registry=r
            ),
            slack_messages=Counter(
                "receiver_slack_messages_total",
                "Slack API calls by method and result.",
                ["method", "result"],
                registry=r,
            ),
            slack_dropped=Counter(
                "receiver_slack_dropped_total", "Notifications dropped (queue full or Slack down).", registry=r
            ),
            slack_up=Gauge(
                "receiver_slack_up",
                "0 while Slack refuses or cannot be reached for good (bad token, missing channel, down), else 1.",
                registry=r,
            ),
            request_latency=Histogram(
                "receiver_http_request_duration_seconds",
                "HTTP request latency by route.",
                ["route", "method"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                registry=r,
            ),
            fights=Counter(
                "receiver_fights_detected_total",
                "Canary scaled back up by someone else after a rollback.",
                ["target", "manager"],
                registry=r,
            ),
            target_misconfigured=Gauge(
                "receiver_target_misconfigured",
                "1 while a target's canary or stable Deployment does not exist (it cannot be rolled back).",
                ["target"],
                registry=r,
            ),
            cache_bytes=Gauge(
                "receiver_cache_bytes",
                "Bytes held by an in-memory cache (repeat: answers to byte-identical re-sends; told: "
                "decisions already posted to Slack), each kept under its budget.",
                ["cache"],
                registry=r,
            ),
            breaker_open=Gauge(
                "receiver_breaker_open",
                "1 while the blast-radius breaker is open: automatic rollback of the target is stopped "
                "until a person closes it (the same on every replica: the state is in the cluster).",
                ["target"],
                registry=r,
            ),
            recoveries=Counter(
                "receiver_recovery_total",
                "Recovery watches after a rollback, by outcome (recovered, not_recovered, unknown).",
                ["target", "outcome"],
                registry=r,
            ),
            alert_to_recovered=Histogram(
                "receiver_alert_to_recovered_seconds",
                "From the alert starting to its metric back under the threshold (recovered rollbacks).",
                buckets=(30, 60, 120, 180, 300, 600, 900, 1800, 3600),
                registry=r,
            ),
        )
        m.build_info.labels(__version__, platform.python_version()).set(1)
        m.slack_up.set(1)  # no failure known (also when slack.mode is console or off)
        for outcome in WEBHOOK_OUTCOMES:
            m.webhooks.labels(outcome)
        for result in ("success", "failure"):
            m.config_reloads.labels(result)
        return m

    def init_target_labels(self, targets: Iterable[str]) -> None:
        """Create every per-target series at 0 (at start and on reload), so dashboards show 0."""
        for target in targets:
            self.rollbacks_started.labels(target)
            for outcome in ROLLBACK_OUTCOMES:
                self.rollbacks_finished.labels(target, outcome)
                self.rollback_duration.labels(target, outcome)
            for kind in DecisionKind:
                self.decisions.labels(target, kind.value)
            self.breaker_open.labels(target)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value, 0 when the series does not exist (tests, the demo)."""
        return self.registry.get_sample_value(name, labels) or 0.0
