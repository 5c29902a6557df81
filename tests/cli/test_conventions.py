"""What people rely on from any CLI: --version, help on every flag, exit codes, --config."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from receiver import __version__
from receiver.cli import build_parser, main
from tests.cli.helpers import config_file, receiver


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


async def test_receiver_version_prints_the_version() -> None:
    r = await receiver("--version")
    assert r.code == 0 and r.out.strip() == f"receiver {__version__}"


def test_the_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "0  success" in out and "1  the command ran and failed" in out
    assert "2  usage or configuration error" in out


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_flag_has_help_text(command: str) -> None:
    missing = [a.option_strings or a.dest for a in subcommands()[command]._actions
               if a.help in (None, "") and a.dest != "help"]
    assert missing == []


@pytest.mark.parametrize("command", ["serve", "rollback", "check-config"])
def test_config_defaults_to_receiver_config_then_config_yaml(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = ["finance-service"] if command == "rollback" else []
    monkeypatch.delenv("RECEIVER_CONFIG", raising=False)
    assert build_parser().parse_args([command, *extra]).config == Path("config.yaml")
    monkeypatch.setenv("RECEIVER_CONFIG", "/etc/receiver/config.yaml")
    assert build_parser().parse_args([command, *extra]).config == Path("/etc/receiver/config.yaml")


def test_check_config_without_a_path_checks_receiver_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path)
    monkeypatch.setenv("RECEIVER_CONFIG", str(path))
    assert main(["check-config"]) == 0
    assert f"Checking '{path}'  SUCCESS" in capsys.readouterr().out


async def test_a_usage_error_is_one_line_with_exit_2() -> None:
    r = await receiver("rollback")
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        "receiver rollback: error: the following arguments are required: TARGET "
        "(see 'receiver rollback --help')"
    ]
