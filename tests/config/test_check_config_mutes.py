"""check-config says which mute holds for each target, as decide will apply it."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.cli import main
from tests.config.test_config import MINIMAL

PAST, FUTURE = "2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], global_until: str, target_until: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(
        MINIMAL.replace("replicas: 5",
                        f"replicas: 5\n    mute: {{by: alice, reason: old one, until: '{target_until}'}}")
        + f"settings:\n  mute: {{by: alice, reason: release freeze, until: '{global_until}'}}\n"
    )
    assert main(["check-config", str(path)]) == 0
    return capsys.readouterr().out


def test_a_target_under_an_active_global_mute_says_the_global_one_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = check(tmp_path, capsys, FUTURE, PAST)
    assert "mute:     expired, by alice, until 2020-01-01T00:00:00+00:00 (old one); muted by the global mute" in out
    assert "mode: MUTED globally" in out


def test_an_expired_global_mute_leaves_the_mode_live_and_the_target_mute_in_charge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = check(tmp_path, capsys, PAST, FUTURE)
    assert "mode: LIVE" in out
    assert "mute:     ACTIVE, by alice, until 2099-01-01T00:00:00+00:00 (old one)\n" in out
    assert "global mute: expired, by alice" in out
