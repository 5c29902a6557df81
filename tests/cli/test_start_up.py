"""A CLI command starts as fast as what it needs: people script `receiver check-config` in
pre-commit hooks and CI, next to kubectl that answers in 0.05 s. What is loaded is the
measure here (timings are not, on shared machines): the Kubernetes client alone costs
about a second and 40 MB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cli.helpers import config_file

PROBE = """
import json, sys
from receiver.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "loaded": sorted(m for m in (
    "kubernetes_asyncio", "slack_sdk", "receiver.cli.serve", "receiver.cli.rollback",
    "receiver.cli.demo", "receiver.cli.check_config", "structlog", "prometheus_client", "asyncio",
    "receiver.domain.alerts") if m in sys.modules)}))
"""


def loaded_by(*args: str) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60,
                          check=False)
    last = json.loads(done.stdout.strip().splitlines()[-1])
    return last["code"], last["loaded"]


def test_the_help_listing_loads_no_command() -> None:
    assert loaded_by("--help") == (0, [])


def test_check_config_without_cluster_loads_neither_the_kubernetes_client_nor_slack(tmp_path: Path) -> None:
    assert loaded_by("check-config", str(config_file(tmp_path))) == (0, ["receiver.cli.check_config"])


def test_check_config_loads_no_logging_metrics_event_loop_or_payload_models(tmp_path: Path) -> None:
    """Half of what made it take 0.5 s of CPU: structlog (and rich through it), the
    metrics library, asyncio and the Alertmanager payload models, none of which a file
    check uses."""
    code, loaded = loaded_by("check-config", str(config_file(tmp_path)))
    assert code == 0
    assert not {"structlog", "prometheus_client", "asyncio", "receiver.domain.alerts"} & set(loaded), loaded
