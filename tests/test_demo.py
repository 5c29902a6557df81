"""The README's first command: the demo runs to its summary and leaves nothing behind."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest


@pytest.mark.timeout(120)
def test_the_demo_rolls_back_shows_the_slack_thread_and_the_muted_target_then_exits_cleanly() -> None:
    before = subprocess.run(["pgrep", "-f", "receiver-demo-"], capture_output=True, text=True).stdout.split()
    proc = subprocess.run(
        [sys.executable, "-m", "receiver", "demo", "--ready-delay", "0.3"],
        capture_output=True,
        text=True,
        timeout=100,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "decision: roll back" in out
    assert "scale-canary: finance-service-v2 scaled 1 -> 0" in out
    assert "Rollback verified: finance-service-v2 at 0, finance-service-v1 5/5 Ready" in out
    assert "Time from alert to verified rollback" in out
    assert "Slack #rollbacks" in out and "rolled back in" in out
    assert "Muted: would have rolled back finance-service" in out and "alice" in out
    assert "still at 1 replica" in out
    if shutil.which("prometheus", path="/usr/bin:/bin"):  # Debian's Prometheus: the recovery is confirmed
        assert "recovery: recovered: HighErrorRate" in out and "on finance-service-v1 for 3 s" in out
        assert "the stable v1 is healthy" in out
    after = subprocess.run(["pgrep", "-f", "receiver-demo-"], capture_output=True, text=True).stdout.split()
    assert set(after) <= set(before), "the demo left a process behind (Alertmanager?)"
