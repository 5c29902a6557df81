"""`receiver breaker close [--by NAME]`: close the blast-radius breaker, so automatic
rollbacks resume on every replica (the breaker's state is in the cluster)."""

from __future__ import annotations

import argparse

from receiver.cli.mute import run_action


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["close"], help="close: automatic rollbacks resume")
    parser.add_argument("--by", default=None, metavar="NAME",
                        help="who closes it (shown in Slack and the Event); default: $USER@host")


def run(args: argparse.Namespace) -> int:
    return run_action(args, lambda _config, actor: lambda actions: actions.close_breaker(actor=actor))
