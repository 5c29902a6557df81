"""`receiver promote TARGET`: the weekly "proceed?" gate, then one phase forward.

A person's decision, never automatic: the gate (the rollout guide's weekly bar, measured
in Prometheus over the soak window) is printed and posted to Slack; a gate that is not
passed (or not measured) refuses unless --force --reason, which is recorded. The move
runs under the target's Lease with the same records, Events and Slack thread as a
rollback, and a rollback that fires meanwhile takes over. Plan, review and move go through
the people's door (receiver.actions: Actions.promote), as Slack's Re-promote does.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from receiver.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Cluster, cluster
from receiver.cli.mute import default_by

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from receiver.domain.promotion import PromotionPlan, Review
    from receiver.domain.rollback import RollbackRecord, Step
    from receiver.domain.settings import Config, Target

EXIT_BUSY = 3


def _week(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a phase name (e.g. week-3)")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="a target name from the config file")
    parser.add_argument("--to", type=_week, default=None, metavar="week-N",
                        help="the phase to move to (default: the next one); must be ahead of the live split")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and the gate's review; change nothing (exit 1 if it would refuse)")
    parser.add_argument("--yes", action="store_true",
                        help="do not ask for confirmation (needed without a terminal)")
    parser.add_argument("--force", action="store_true",
                        help="promote although the gate is not passed (needs --reason, which is recorded)")
    parser.add_argument("--reason", default=None, metavar="TEXT", help="why the gate is overridden")
    parser.add_argument("--by", default=None, metavar="NAME", help="who decides (default: $USER@host)")


def print_plan(plan: PromotionPlan, target: Target, out: TextIO) -> None:
    print(f"Promote {target.name}: {plan.describe(target.canary, target.stable)}", file=out, flush=True)


async def promote_command(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    from receiver.domain.settings import ConfigError, load_config

    if args.force and not (args.reason or "").strip():
        print("error: --force needs --reason TEXT (it is recorded with the promotion); nothing was changed",
              file=err)
        return EXIT_USAGE
    if args.reason and not args.force:
        print("error: --reason is the reason for --force; give both or neither", file=err)
        return EXIT_USAGE
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(e, file=err)
        return EXIT_USAGE
    target = config.target(args.target)
    if target is None:
        print(f"error: unknown target {args.target!r}; configured: "
              f"{', '.join(t.name for t in config.targets)}", file=err)
        return EXIT_USAGE
    async with cluster(args, err) as c:
        return await _promote(args, config, target, c, out, err, stdin)


async def _promote(args: argparse.Namespace, config: Config, target: Target, c: Cluster,
                   out: TextIO, err: TextIO, stdin: TextIO) -> int:
    from receiver.actions import Actions, Actor
    from receiver.domain.promotion import PlanError
    from receiver.kube import KubeError
    from receiver.kube.shared_state import SharedStateStore
    from receiver.notify.factory import NullNotifier

    api, retry, kube = c.api, c.retry, c.kube
    # the plan and the gate's review from the people's door (as Slack's Re-promote), without acting
    door = Actions(kube, lambda: config, SharedStateStore(kube, lambda: config), NullNotifier(),
                   identity=f"cli@{socket.gethostname()}")
    try:
        preview = await door.promote(target.name, to=args.to, actor=Actor(_who(args), "cli"),
                                     force_reason=args.reason if args.force else None, dry_run=True)
    except KubeError as e:
        print(f"error: cannot read {target.name}'s Deployments: {e}", file=err)
        return EXIT_FAILED
    except (PlanError, ValueError) as e:
        print(f"error: {e}; nothing was changed", file=err)
        return EXIT_USAGE
    plan, review = preview.plan, preview.review
    print_plan(plan, target, out)
    print(review.table(), file=out, flush=True)
    if args.dry_run:
        would = "would promote" if review.passed or args.force else "would refuse (the gate is not passed)"
        print(f"Dry run: {would}; nothing was changed.", file=out, flush=True)
        return EXIT_OK if review.passed or args.force else EXIT_FAILED
    if not review.passed and not args.force:
        await _post_refusal(config, target, plan, review, args)
        print(f"Not promoting {target.name}: {review.verdict}. Roll back, wait, or promote anyway "
              "with --force --reason TEXT (recorded).", file=err)
        return EXIT_FAILED
    if not args.yes:
        if not stdin.isatty():
            print("error: promote asks for confirmation and stdin is not a terminal; pass --yes "
                  "to confirm non-interactively; nothing was changed", file=err)
            return EXIT_USAGE
        print(f"Promote {target.name} to {plan.to.display}? [y/N] ", end="", file=out, flush=True)
        answer = (await asyncio.to_thread(stdin.readline)).strip().lower()
        if answer not in ("y", "yes"):
            print("Not promoted; nothing was changed.", file=out)
            return EXIT_FAILED
    return await _run(args, config, target, plan, review, api, retry, out, err)


def _who(args: argparse.Namespace) -> str:
    return str(args.by or default_by())


async def _post_refusal(config: Config, target: Target, plan: PromotionPlan, review: Review,
                        args: argparse.Namespace) -> None:
    """Slack hears of a refused gate like of a promotion: one parent and the review."""
    from receiver.domain.rollback import Phase, Step
    from receiver.notify.console import ConsoleNotifier
    from receiver.notify.factory import make_notifier
    from receiver.rollback.promotion import new_promotion

    notifier = make_notifier(config.slack, config=lambda: config)
    if isinstance(notifier, ConsoleNotifier):
        return
    now = datetime.now(UTC)
    record = new_promotion(target, plan, review, now, requested_by=_who(args), force_reason=None)
    gate = Step(name="gate", message=review.table(), at=now, ok=False)
    record = replace(record.with_step(gate), phase=Phase.FAILED, finished_at=now,
                     error=f"refused: {review.verdict}")
    await notifier.start()
    notifier.rollback_changed(record, gate)
    await notifier.close(10)


async def _run(args: argparse.Namespace, config: Config, target: Target, plan: PromotionPlan,
               review: Review, api: ApiClient, retry: Any, out: TextIO, err: TextIO) -> int:
    from receiver.actions import Actions, Actor
    from receiver.cli.rollback import Printer
    from receiver.domain.rollback import Phase
    from receiver.kube import Kube, KubeError
    from receiver.kube.shared_state import SharedStateStore
    from receiver.notify.console import ConsoleNotifier
    from receiver.notify.factory import NullNotifier, make_notifier
    from receiver.rollback.executor import Executor, RecordError
    from receiver.rollback.promotion import PromotionBusy

    by = _who(args)
    printer = Printer(out)
    last_pods: list[tuple[str, ...]] = [()]

    def show(record: RollbackRecord, step: Step | None) -> None:
        """Each step as `receiver rollback` prints it; pods not Ready yet when they change."""
        if step is not None:
            printer(replace(record, progress=replace(record.progress, stable_desired=None)), step)
        pods = record.progress.not_ready
        if pods != last_pods[0]:
            last_pods[0] = pods
            if pods:
                print("    not ready yet: " + ", ".join(pods[:5]), file=out, flush=True)

    executor: Executor | None = None

    async def on_thread(record_id: str, channel: str, ts: str) -> None:
        if executor is not None:
            await executor.set_slack_thread(record_id, channel, ts)

    notifier = make_notifier(config.slack, on_thread=on_thread, config=lambda: config)
    slack = None if isinstance(notifier, ConsoleNotifier) else notifier

    def on_change(record: RollbackRecord, step: Step | None) -> None:
        if step is None or step.name != "gate":  # the review is printed above
            show(record, step)
        if slack is not None:
            slack.rollback_changed(record, step)

    executor = Executor(api, lambda: config, f"promote-{by}@{socket.gethostname()}"[:128],
                        on_change=on_change, retry=retry)
    kube = Kube(api, retry)
    door = Actions(kube, lambda: config, SharedStateStore(kube, lambda: config),
                   slack if slack is not None else NullNotifier(), executor, identity=f"cli@{socket.gethostname()}")
    if slack is not None:
        await slack.start()
    try:  # the door plans and measures again just before the change (the gate at that moment)
        done = await door.promote(target.name, to=plan.to.name, actor=Actor(by, "cli"),
                                  force_reason=args.reason if args.force else None)
    except PromotionBusy as e:
        print(e, file=err)
        return EXIT_BUSY
    except RecordError as e:
        print(f"cannot start the promotion: {e}", file=err)
        return EXIT_FAILED
    except (ValueError, KubeError) as e:  # the split moved since the plan, a Deployment unreadable
        print(f"Not promoted: {e}; nothing was changed", file=err)
        return EXIT_FAILED
    finally:
        await executor.close(timeout=5)
        if slack is not None:
            await slack.close(10)
    if done.record is None:  # the gate, measured again, is no longer passed
        print(f"Not promoting {target.name}: {done.refused}; nothing was changed", file=err)
        return EXIT_FAILED
    record = done.record
    took = f" in {record.duration_seconds:.1f} s" if record.duration_seconds is not None else ""
    if record.phase is Phase.SUCCEEDED:
        print(f"Promotion {record.id}: {target.name} is in {plan.to.display}{took} "
              f"({target.canary} {plan.canary_to}, {target.stable} {plan.stable_to}, verified).",
              file=out, flush=True)
        return EXIT_OK
    print(f"Promotion {record.id} NOT done{took}: {record.error}", file=out, flush=True)
    return EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    from receiver.logs import configure as configure_logs

    configure_logs(level="warning")
    try:
        return asyncio.run(promote_command(args, sys.stdout, sys.stderr, sys.stdin))
    except KeyboardInterrupt:
        print("interrupted: the promotion's Lease expires; check the split with kubectl", file=sys.stderr)
        return EXIT_FAILED
