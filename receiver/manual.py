"""`receiver rollback TARGET`: the on-call engineer's button, with live progress.

Runs the same executor as the service (same Lease, same records, same checks), so a
manual rollback and an alert-driven one can never run on a target at the same time.
Exit status 0 only when the stable is verified serving.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
from pathlib import Path
from typing import TextIO

from receiver.config import ConfigError, load_config
from receiver.core.rollback import Phase, RollbackRecord, Step
from receiver.executor import Executor, RecordError, RollbackBusy
from receiver.kube import KubeError, new_api_client
from receiver.logs import configure as configure_logs

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="a target name from config.yaml")
    parser.add_argument("--config", required=True, help="path to config.yaml")
    parser.add_argument("--dry-run", action="store_true",
                        help="read the cluster and say what would be done; change nothing")
    parser.add_argument("--by", default=None,
                        help="who asks (shown in the record and Slack); default: $USER")
    parser.add_argument("--kubeconfig", default=None,
                        help="kubeconfig path; default: $KUBECONFIG, ~/.kube/config, in-cluster")
    parser.add_argument("--context", default=None, help="kubeconfig context")


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
        config = load_config(Path(args.config))
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    target = config.target(args.target)
    if target is None:
        names = ", ".join(t.name for t in config.targets)
        print(f"unknown target {args.target!r}; configured: {names}", file=sys.stderr)
        return EXIT_USAGE
    by = args.by or getpass.getuser()
    try:
        api = await new_api_client(args.kubeconfig, args.context)
    except Exception as e:  # kubeconfig missing/invalid, not in a cluster
        print(f"cannot find a cluster: {e}", file=sys.stderr)
        return EXIT_USAGE
    printer = Printer(out)
    executor = Executor(api, lambda: config, f"manual-{by}@{socket.gethostname()}"[:128],
                        on_change=printer)
    mode = " (dry run)" if args.dry_run else ""
    print(f"Rolling {target.name} back{mode}: {target.namespace}/{target.canary} -> 0, "
          f"{target.namespace}/{target.stable} -> {target.replicas}", file=out, flush=True)
    try:
        record = await executor.run_manual(target, by, args.dry_run)
    except RollbackBusy as e:
        print(e, file=sys.stderr)
        return EXIT_BUSY
    except (KubeError, RecordError) as e:
        print(f"cannot start the rollback: {e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await executor.close(timeout=5)
        await api.close()
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
