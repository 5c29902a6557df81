"""`receiver history [TARGET] [--since 7d] [-o table|json]`: past rollbacks with their timelines.

Read from the targets' Leases, where each finished rollback is kept (the last
HISTORY_KEEP per target, oldest dropped), so it outlives Kubernetes Events (kept an
hour by default) and any receiver restart, and needs no receiver running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

from receiver.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, cluster_retry, reach, unreachable
from receiver.cli.status import load
from receiver.kube import Kube, KubeError, new_api_client
from receiver.kube.client import KubeconfigError
from receiver.logs import configure as configure_logs
from receiver.status.views import HistoryEntry, HistoryView, build_history, lease_records, parse_since, read_objects

DEFAULT_SINCE = "7d"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="TARGET", help="one target (default: all configured)")
    parser.add_argument("--since", default=DEFAULT_SINCE, metavar="DURATION|TIME",
                        help=f"only rollbacks started since: a duration back (30m, 24h, 7d, 2w) or an "
                             f"RFC 3339 time (default {DEFAULT_SINCE}); running ones are always shown")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table",
                        help="table (default): one block per rollback with its timeline; json: the typed view")


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def block(e: HistoryEntry) -> list[str]:
    """One rollback: a heading line, why, how it ended, then its timeline."""
    what = f"alert {e.alert}" + (f" (rule {e.rule})" if e.rule else "") if e.trigger == "alert" \
        else f"manual by {e.requested_by or 'unknown'}"
    dry = " (dry run)" if e.dry_run else ""
    lines = [
        f"{e.started_at:%Y-%m-%d %H:%M:%S}Z  {e.target}  {e.outcome}{dry} in {_seconds(e.duration_seconds)}"
        f"  {what}  id {e.id}",
        f"    reason:   {e.reason}",
        f"    recovery: {e.recovery.outcome}",
    ]
    if e.error:
        lines.append(f"    error:    {e.error}")
    for s in e.steps:
        mark = "x" if not s.ok else ("!" if s.warning else "+")
        took = f" ({s.duration_seconds * 1000:.0f} ms)" if s.duration_seconds else ""
        lines.append(f"    [{mark}] {s.at:%H:%M:%S} {s.name:<13} {s.message}{took}")
    return lines


def render(view: HistoryView, output: str) -> str:
    if output == "json":
        return json.dumps(view.model_dump(mode="json"), indent=2)
    if not view.rollbacks:
        since = f" since {view.since:%Y-%m-%d %H:%M}Z" if view.since else ""
        return f"No rollbacks{since}" + (f" of {view.target}" if view.target else "") + "."
    return "\n\n".join("\n".join(block(e)) for e in view.rollbacks)


def run(args: argparse.Namespace) -> int:
    configure_logs(level="warning")  # the listing is the output; logs only for trouble
    try:
        return asyncio.run(history(args, sys.stdout))
    except BrokenPipeError:  # `| head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


async def history(args: argparse.Namespace, out: TextIO) -> int:
    now = datetime.now(UTC)
    try:
        since = parse_since(args.since, now)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    config = load(args)
    if config is None:
        return EXIT_USAGE
    try:
        api = await new_api_client(args.kubeconfig, args.context)
    except KubeconfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        host = str(api.configuration.host)
        retry = cluster_retry(args, sys.stderr, host)
        if (err := await reach(api, retry)) is not None:
            print(unreachable(host, err, args.request_timeout), file=sys.stderr)
            return EXIT_FAILED
        try:
            objects = await read_objects(Kube(api, retry), config)
        except KubeError as e:
            print(unreachable(host, e, args.request_timeout), file=sys.stderr)
            return EXIT_FAILED
    finally:
        await api.close()
    view = build_history(lease_records(config, objects), target=args.target, since=since)
    print(render(view, args.output), file=out, flush=True)
    return EXIT_OK
