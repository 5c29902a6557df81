"""`receiver breaker close [--by NAME]`: close the blast-radius breaker, so automatic
rollbacks resume on every replica (the breaker's state is in the cluster)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from receiver.cli import EXIT_USAGE
from receiver.cli.mute import _quiet, load, person, with_actions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["close"], help="close: automatic rollbacks resume")
    parser.add_argument("--by", default=None, metavar="NAME",
                        help="who closes it (shown in Slack and the Event); default: $USER@host")


def run(args: argparse.Namespace) -> int:
    _quiet()
    config = load(args)
    if config is None:
        return EXIT_USAGE
    try:
        actor = person(args, config)
    except ValueError as e:
        print(f"error: {e}; nothing was written", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(with_actions(args, config, sys.stdout, lambda actions: actions.close_breaker(actor=actor)))
