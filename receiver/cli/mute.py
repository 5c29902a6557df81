"""`receiver mute TARGET|--all --for 2h|--until TIME --reason TEXT [--by NAME]` and
`receiver unmute TARGET|--all [--by NAME]`: run-time mutes every replica obeys.

They write the shared-state ConfigMap directly (no receiver needs to be running), through
receiver.actions (the same checks, Event and Slack announcement as over HTTP or Slack).
Exit 2 on bad input (nothing written), 1 when the cluster could not be written.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TextIO

from receiver.cli import EXIT_OK, EXIT_USAGE, cluster

if TYPE_CHECKING:
    from receiver.actions import Actions, Actor, Done
    from receiver.domain.settings import Config


def default_by() -> str:
    """$USER@host, as people are named in Slack and the Events."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _target_flags(parser: argparse.ArgumentParser, verb: str) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("target", nargs="?", metavar="TARGET", help=f"a target name from the config file to {verb}")
    which.add_argument("--all", action="store_true", help=f"{verb} every target (the global run-time mute)")
    parser.add_argument("--by", default=None, metavar="NAME",
                        help="who acts (shown in Slack and the Event); default: $USER@host")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _target_flags(parser, "mute")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--for", dest="duration", metavar="DURATION", help="how long, e.g. 30m, 2h, 1h30m, 1d")
    when.add_argument("--until", metavar="TIME", help="until when, RFC 3339 with a zone, e.g. 2026-11-27T18:00:00Z")
    parser.add_argument("--reason", required=True, metavar="TEXT", help="why (shown in Slack)")


def add_unmute_arguments(parser: argparse.ArgumentParser) -> None:
    _target_flags(parser, "unmute")


def load(args: argparse.Namespace) -> Config | None:
    from receiver.domain.settings import ConfigError, load_config

    try:
        return load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return None


async def with_actions(args: argparse.Namespace, config: Config, out: TextIO,
                       act: Callable[[Actions], Awaitable[Done]]) -> int:
    """Reach the cluster as kubectl would, build the actions (Slack announcements
    included), run ``act`` and print what it wrote."""
    from receiver.actions import Actions
    from receiver.kube.shared_state import SharedStateStore
    from receiver.notify.console import ConsoleNotifier
    from receiver.notify.factory import NullNotifier, make_notifier

    async with cluster(args) as c:
        store = SharedStateStore(c.kube, lambda: config)
        notifier = make_notifier(config.slack, config=lambda: config)
        if isinstance(notifier, ConsoleNotifier):  # the lines printed below are the console
            notifier = NullNotifier()
        actions = Actions(c.kube, lambda: config, store, notifier, identity=f"cli@{socket.gethostname()}")
        await notifier.start()
        try:
            done = await act(actions)
        except ValueError as e:
            print(f"error: {e}; nothing was written", file=sys.stderr)
            return EXIT_USAGE
        finally:
            await notifier.close(10)
        print(done.message, file=out)
        if done.changed:
            channel = "" if isinstance(notifier, NullNotifier) else " and announced in Slack"
            print(f"written: ConfigMap {store.namespace}/{store.name}; recorded as an Event{channel}", file=out)
        for warning in done.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return EXIT_OK


def _quiet() -> None:
    from receiver.logs import configure

    configure(level="warning")  # the printed lines are the output; logs only for trouble


def person(args: argparse.Namespace, config: Config) -> Actor:
    """Who acts from this command line (--by, else $USER@host), once its TARGET is known
    to the config; ValueError otherwise, before the cluster is contacted."""
    from receiver.actions import Actor

    target = getattr(args, "target", None)
    if target is not None and config.target(target) is None:
        names = ", ".join(sorted(t.name for t in config.targets))
        raise ValueError(f"unknown target {target!r}; configured targets: {names}")
    return Actor(default_by() if args.by is None else args.by, "cli")


def run_action(args: argparse.Namespace,
               act: Callable[[Config, Actor], Callable[[Actions], Awaitable[Done]]]) -> int:
    """A person's action from the command line: who acts and ``act``'s own checks first
    (bad input exits 2 before the cluster is contacted), then the action through the door."""
    _quiet()
    config = load(args)
    if config is None:
        return EXIT_USAGE
    try:
        action = act(config, person(args, config))
    except ValueError as e:
        print(f"error: {e}; nothing was written", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(with_actions(args, config, sys.stdout, action))


def run(args: argparse.Namespace) -> int:
    from receiver.actions import parse_duration, parse_time

    def act(_config: Config, actor: Actor) -> Callable[[Actions], Awaitable[Done]]:
        until = parse_duration(args.duration) if args.duration is not None else parse_time(args.until)
        if not args.reason.strip():
            raise ValueError("--reason must not be empty")
        return lambda actions: actions.mute(None if args.all else args.target, until=until, reason=args.reason,
                                            actor=actor)

    return run_action(args, act)


def run_unmute(args: argparse.Namespace) -> int:
    return run_action(args, lambda _config, actor: lambda actions: actions.unmute(
        None if args.all else args.target, actor=actor))
