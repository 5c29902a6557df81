"""The `receiver` command: serve | check-config | demo | sim | rollback.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them, so `receiver --help` stays cheap and a
command's options sit next to its code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("receiver.serve", "run the webhook receiver"),
    "check-config": ("receiver.check_config", "validate a config file and print what it would do"),
    "demo": ("receiver.demo", "run the whole chain on a simulated cluster, live in the terminal"),
    "sim": ("receiver.sim.cli", "serve a simulated Kubernetes API (and fake Slack) on loopback"),
    "rollback": ("receiver.manual", "roll a target back now, with live progress"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="receiver", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue  # command not built yet
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args))


if __name__ == "__main__":
    sys.exit(main())
