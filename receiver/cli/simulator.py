"""Load the simulator package for `receiver demo` and `receiver sim`, or say how to get it.

The simulator (a Kubernetes API server, a fake Slack, runners for Debian's Prometheus
and Alertmanager) is its own distribution, `rollback-receiver-sim`, never shipped in the
product's wheel or image; these two subcommands keep their flags by loading it here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from types import ModuleType

MISSING = (
    "receiver {command}: the simulator is not installed (it is not part of the product or its image).\n"
    "From a checkout of rollback-receiver: `make demo` sets everything up, or "
    "`pip install -e ./sim` into the same environment."
)


def load(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name in ("sim", module):
            return None
        raise


MODULES = {"demo": "sim.demo", "sim": "sim.cli"}


def missing(command: str) -> str | None:
    """What to tell someone who runs `receiver demo|sim` without the simulator installed."""
    if command in MODULES and load(MODULES[command]) is None:
        return MISSING.format(command=command)
    return None


def entry(
    command: str, module: str
) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """add_arguments and run for a subcommand implemented by the simulator package."""

    def add_arguments(p: argparse.ArgumentParser) -> None:
        mod = load(module)
        if mod is not None:
            mod.add_arguments(p)
        else:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(args: argparse.Namespace) -> int:
        mod = load(module)
        if mod is None:
            print(MISSING.format(command=command), file=sys.stderr)
            return 2
        return int(mod.run(args))

    return add_arguments, run
