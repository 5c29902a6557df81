"""`receiver status [TARGET] [--watch] [-o table|json|yaml]`: each target as the cluster has it.

Reads the cluster directly (kubeconfig or in-cluster), so it answers with no receiver
running: the live split and its phase, both Deployments' replicas and Ready pods, the
mute in force, the rollback running (from the target's Lease) with its current step,
the last outcome, and the breaker. ``--watch`` lists and watches the Deployments and
Leases and prints a target's line again each time it changes, like ``kubectl get -w``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

import yaml

from receiver.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, cluster
from receiver.domain.settings import Config, ConfigError, load_config
from receiver.kube import Kube
from receiver.logs import configure as configure_logs
from receiver.status.views import (
    DeploymentView,
    LiveObjects,
    StatusView,
    TargetStatus,
    build_status,
    read_objects,
    unknown_target,
)

COLUMNS = ("TARGET", "PHASE", "CANARY", "STABLE", "ROLLBACK", "LAST", "BREAKER", "MUTE")
#: --watch prints line by line, so it cannot re-align: room for e.g. "not started (0/5)".
WATCH_WIDTHS = (0, 18, 7, 7, 30, 17, 7, 0)
#: How often --watch checks, without asking the API, that its watches still work.
HEALTH_CHECK_SECONDS = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="TARGET", help="one target (default: all configured)")
    parser.add_argument("-w", "--watch", action="store_true",
                        help="after the table, print a target's line again each time it changes")
    parser.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table",
                        help="table (default), or the typed view as json / yaml (with --watch: "
                             "one JSON object per line and change)")


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return ""
    s = max((now - when).total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit} ago"
    return f"{int(s)}s ago"


def row(t: TargetStatus, now: datetime) -> tuple[str, ...]:
    """One table row; READY/SPEC per Deployment as kubectl shows READY."""

    def pods(d: DeploymentView) -> str:
        return f"{d.ready}/{d.replicas}" if d.exists else "missing"

    phase = f"{t.phase.text} ({t.phase.canary_replicas}/{t.phase.full_count})" if t.phase else "unknown"
    running = "-"
    if t.rollback is not None:
        running = t.rollback.phase + (f" (after {t.rollback.step})" if t.rollback.step else "")
    last = f"{t.last.outcome} {_ago(t.last.finished_at, now)}".strip() if t.last else "-"
    if t.last is not None and t.last.dry_run:
        last += " (dry run)"
    mute = "unknown (shared state unreadable)" if t.state_problem else "-"
    if t.mute is not None:
        until = f"until {t.mute.until:%Y-%m-%d %H:%M}Z" if t.mute.until else "until removed"
        scope = "" if t.mute.scope == "target" else " all targets"
        mute = f"{t.mute.source}{scope}: {t.mute.by} {until}: {t.mute.reason}"
    return (t.name, phase, pods(t.canary), pods(t.stable), running, last, t.breaker.state, mute)


def table(rows: list[tuple[str, ...]], header: bool = True) -> list[str]:
    """kubectl's layout: columns padded to the widest cell plus three spaces."""
    allrows = [COLUMNS, *rows] if header else rows
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    return ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in allrows]


def render(view: StatusView, output: str) -> str:
    data = view.model_dump(mode="json")
    if output == "json":
        return json.dumps(data, indent=2)
    if output == "yaml":
        return yaml.safe_dump(data, sort_keys=False).rstrip()
    return "\n".join(table([row(t, view.generated_at) for t in view.targets]))


def run(args: argparse.Namespace) -> int:
    configure_logs(level="warning")  # the table is the output; logs only for trouble
    try:
        return asyncio.run(status(args, sys.stdout))
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # `| head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def load(args: argparse.Namespace) -> Config | None:
    """The config, or None after saying why (config error, unknown target)."""
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return None
    if (problem := unknown_target(config, args.target)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return None
    return config


async def status(args: argparse.Namespace, out: TextIO) -> int:
    config = load(args)
    if config is None:
        return EXIT_USAGE
    async with cluster(args) as c:
        if args.watch:
            return await watch(c.kube, config, args, out)
        objects = await read_objects(c.kube, config)
    print(render(build_status(config, objects, datetime.now(UTC), args.target), args.output),
          file=out, flush=True)
    for problem in objects.state.problems:  # mutes and the breaker unknown: said, and not a success
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def watch(kube: Kube, config: Config, args: argparse.Namespace, out: TextIO) -> int:
    """Print the view, then each target's line again whenever it changes (until interrupted).

    Lines are re-rendered on every Deployment or Lease event, and also when a mute's
    ``until`` passes (no event marks that)."""
    live = LiveObjects(kube, config)
    try:
        await live.start()
        shown: dict[str, str] = {}
        # later lines keep the first table's columns: leave room for the longer values
        widths_from: list[tuple[str, ...]] = [tuple(" " * n for n in WATCH_WIDTHS)]
        first = True
        trouble: str | None = None
        while True:
            live.changed.clear()  # before reading: a change while rendering wakes the next round
            now = datetime.now(UTC)
            view = build_status(config, live.snapshot(), now, args.target)
            for t in view.targets:
                if args.output == "table":
                    r = row(t, now)
                    if first:
                        widths_from.append(r)
                    key = "\t".join(r[:5] + r[6:]) + (r[5].split(" ")[0] if r[5] else "")  # "ago" ticks are no change
                    line = None if shown.get(t.name) == key else r
                    shown[t.name] = key
                    if line is not None and not first:
                        print(table([*widths_from, line], header=False)[-1], file=out, flush=True)
                else:
                    text = json.dumps(t.model_dump(mode="json"), separators=(",", ":"))
                    if shown.get(t.name) != text:
                        shown[t.name] = text
                        print(text if args.output == "json" else "---\n" + yaml.safe_dump(
                            t.model_dump(mode="json"), sort_keys=False).rstrip(), file=out, flush=True)
            if first and args.output == "table":
                print("\n".join(line for line in table(widths_from) if line), file=out, flush=True)
            first = False
            if (problem := live.problem()) != trouble:  # a lost cluster: say so, keep watching
                trouble = problem
                print(f"warning: {problem}; the lines above may be stale" if problem
                      else "the watch is current again", file=sys.stderr, flush=True)
            expiries = [t.mute.until for t in view.targets if t.mute is not None and t.mute.until is not None]
            # wake when a mute ends (no event marks it) and now and then to notice a lost watch
            wait = min([HEALTH_CHECK_SECONDS, *((u - now).total_seconds() + 0.5 for u in expiries)])
            with contextlib.suppress(TimeoutError):  # a mute's end: redraw without an event
                await asyncio.wait_for(live.changed.wait(), wait)
    finally:
        await live.stop()
