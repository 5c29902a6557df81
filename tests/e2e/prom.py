"""Debian's Prometheus and Alertmanager for the end-to-end tests.

The runners live in sim.monitoring (the demo uses them too); this module adds
the shipped Alertmanager snippet pointed at a test receiver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sim.monitoring import (
    Alertmanager,
    ExternalProcessError,
    Prometheus,
    prometheus_config,
    running_alertmanager,
    running_prometheus,
)

__all__ = [
    "Alertmanager",
    "ExternalProcessError",
    "Prometheus",
    "alertmanager_config",
    "prometheus_config",
    "running_alertmanager",
    "running_prometheus",
]

ALERTMANAGER_YML = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"


def alertmanager_config(
    webhook_url: str,
    credentials_file: Path,
    *,
    group_wait: str = "0s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> str:
    """deploy/alertmanager/alertmanager.yml pointed at a test receiver, with test timings.

    The route, matchers, grouping and webhook settings stay as shipped, so the
    end-to-end test exercises the snippet operators install; only the URL, the token
    file and the waits change.
    """
    doc: dict[str, Any] = yaml.safe_load(ALERTMANAGER_YML.read_text(encoding="utf-8"))
    for route in doc["route"].get("routes", []):
        if route["receiver"] == "rollback-receiver":
            route.update(group_wait=group_wait, group_interval=group_interval,
                         repeat_interval=repeat_interval)
    for receiver in doc["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
            hook["http_config"]["authorization"]["credentials_file"] = str(credentials_file)
    return yaml.safe_dump(doc, sort_keys=False)
