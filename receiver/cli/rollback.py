"""`receiver rollback TARGET`: the on-call engineer's button, with live progress.

Runs the same executor as the service (same Lease, same records, same checks), so a
manual rollback and an alert-driven one can never run on a target at the same time.
Exit status 0 only when the stable is verified serving.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import TYPE_CHECKING, TextIO

from receiver.cli import Cluster, cluster
from receiver.cli.mute import default_by
from receiver.domain.rollback import Phase, RollbackRecord, Step
from receiver.domain.settings import Config, ConfigError, Target, load_config
from receiver.logs import configure as configure_logs
from receiver.rollback.executor import Executor, RecordError, RollbackBusy

if TYPE_CHECKING:
    pass

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """TARGET and the rollback's own flags; --config and the cluster flags come from cli.py."""
    parser.add_argument("target", metavar="TARGET", help="a target name from the config file")
    parser.add_argument("--dry-run", action="store_true",
                        help="read the cluster and say what would be done; change nothing")
    parser.add_argument("--by", default=None, metavar="NAME",
                        help="who asks (shown in the record and Slack); default: $USER@host")


class Printer:
    """Prints each step as it happens, and progress when the numbers change."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last = ""

    def __call__(self, record: RollbackRecord, step: Step | None) -> None:
        if step is not None:
            mark = "x" if not step.ok else ("!" if step.warning else "+")
            took = f" ({step.duration_seconds * 1000:.0f} ms)" if step.duration_seconds else ""
            print(f"[{mark}] {step.at:%H:%M:%S} {step.name:<13} {step.message}{took}",
                  file=self.out, flush=True)
        p = record.progress
        if p.stable_desired is not None:
            line = (f"    {record.canary} {p.canary_replicas if p.canary_replicas is not None else '?'}"
                    f" replicas | {record.stable} {p.stable_ready or 0}/{p.stable_desired} ready")
            if p.not_ready:
                line += " | not ready: " + ", ".join(p.not_ready[:5])
            if line != self.last:
                self.last = line
                print(line, file=self.out, flush=True)


async def rollback(args: argparse.Namespace, out: TextIO) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    target = config.target(args.target)
    if target is None:
        names = ", ".join(t.name for t in config.targets)
        print(f"unknown target {args.target!r}; configured: {names}", file=sys.stderr)
        return EXIT_USAGE
    by = args.by or default_by()
    async with cluster(args) as c:
        return await _rollback(args, config, target, by, c, out)


async def _rollback(args: argparse.Namespace, config: Config, target: Target, by: str,
                    c: Cluster, out: TextIO) -> int:
    from receiver.actions import Actions, Actor
    from receiver.kube.shared_state import SharedStateStore
    from receiver.notify.console import ConsoleNotifier
    from receiver.notify.factory import NullNotifier, make_notifier

    api, retry, kube = c.api, c.retry, c.kube
    printer = Printer(out)
    # Slack hears of a manual rollback like of any other (parent, thread, outcome); the
    # console notifier is left out: the progress lines below are the console.
    executor: Executor | None = None

    async def on_thread(rollback_id: str, channel: str, ts: str) -> None:
        if executor is not None:
            await executor.set_slack_thread(rollback_id, channel, ts)

    notifier = make_notifier(config.slack, on_thread=on_thread, config=lambda: config)
    slack = None if isinstance(notifier, ConsoleNotifier) else notifier

    def on_change(record: RollbackRecord, step: Step | None) -> None:
        printer(record, step)
        if slack is not None:
            slack.rollback_changed(record, step)

    executor = Executor(api, lambda: config, f"manual-{by}@{socket.gethostname()}"[:128],
                        on_change=on_change, retry=retry)
    # the same door as HTTP and Slack: the same checks, and the mute it goes past said
    actions = Actions(kube, lambda: config, SharedStateStore(kube, lambda: config),
                      slack if slack is not None else NullNotifier(), executor,
                      identity=f"cli@{socket.gethostname()}")
    if (mute := actions.overridden_mute(target, await actions.shared_state())) is not None:
        print(f"Note: this {mute}", file=out, flush=True)
    if slack is not None:
        await slack.start()
    mode = " (dry run)" if args.dry_run else ""
    print(f"Rolling {target.name} back{mode}: {target.namespace}/{target.canary} -> 0, "
          f"{target.namespace}/{target.stable} -> {target.replicas}", file=out, flush=True)
    try:
        record = await actions.rollback(target.name, actor=Actor(by, "cli"), dry_run=args.dry_run)
    except RollbackBusy as e:
        print(e, file=sys.stderr)
        return EXIT_BUSY
    except RecordError as e:
        print(f"cannot start the rollback: {e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await executor.close(timeout=5)
        if slack is not None:
            await slack.close(10)
    took = f" in {record.duration_seconds:.1f} s" if record.duration_seconds is not None else ""
    if record.phase is Phase.SUCCEEDED:
        verdict = "dry run finished, nothing changed" if record.dry_run else "verified"
        print(f"Rollback {record.id} {verdict}{took}.", file=out, flush=True)
        return EXIT_OK
    print(f"Rollback {record.id} FAILED{took}: {record.error}", file=out, flush=True)
    return EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    configure_logs(level="warning")  # the progress lines are the output; logs only for trouble
    try:
        return asyncio.run(rollback(args, sys.stdout))
    except KeyboardInterrupt:
        print("interrupted: the rollback's Lease expires and another receiver resumes it",
              file=sys.stderr)
        return EXIT_FAILED
