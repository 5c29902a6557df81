"""`receiver check-config PATH...`: validate config files and say what they would do.

Like ``amtool check-config``: one ``Checking 'PATH'  SUCCESS`` or ``FAILED: reason``
line per file, then what was found, spelled out so a reviewer of a config change
sees its effect (which alerts roll back which Deployments, in which order, muted or
not, live or dry run) without running the receiver. Exit 1 if any file is invalid.
Secrets are never read, only whether their sources are present.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from receiver.config import Config, ConfigError, Mute, Rule, StepOrder, Target, load_config
from receiver.core.matchers import format_matchers
from receiver.core.units import format_value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="config file(s) (default: --config)")


def run(args: argparse.Namespace) -> int:
    failed = 0
    now = datetime.now(UTC)
    for path in args.paths or [args.config]:
        failed += 0 if check(path, now=now, out=sys.stdout) else 1
    if failed:
        print(f"receiver: error: failed to validate {failed} file(s)", file=sys.stderr)
        return 1
    return 0


def check(
    path: Path,
    *,
    now: datetime,
    out: TextIO,
    env: dict[str, str] | None = None,
) -> bool:
    """Print the verdict and summary for one file; True when it is valid."""
    try:
        config = load_config(path)
    except ConfigError as e:
        first, *rest = str(e).splitlines()
        print(f"Checking '{path}'  FAILED: {first}", file=out)
        for line in rest:
            print(line, file=out)
        print(file=out)
        return False
    print(f"Checking '{path}'  SUCCESS", file=out)
    print("Found:", file=out)
    for line in describe(config, now=now, env=os.environ if env is None else env):
        print(line, file=out)
    print(file=out)
    return True


def _mute_text(mute: Mute | None, now: datetime) -> str:
    if mute is None:
        return "none"
    if mute.until is None:
        return f"ACTIVE, by {mute.by}, until removed ({mute.reason})"
    state = "ACTIVE" if mute.active(now) else "expired"
    return f"{state}, by {mute.by}, until {mute.until.isoformat()} ({mute.reason})"


def _rule_text(i: int, rule: Rule) -> list[str]:
    when = format_matchers(rule.parsed)
    if rule.threshold is None:
        trigger = "any firing alert rolls back"
    else:
        trigger = (
            f"rolls back when annotation {rule.value_annotation!r} > "
            f"{format_value(rule.threshold, rule.unit)} (threshold {rule.threshold:g}, "
            f"unit {rule.unit})"
        )
    lines = [f"   {i}. {rule.name}: {when}", f"      {trigger}"]
    if rule.description:
        lines.append(f"      {rule.description}")
    return lines


def _order_text(order: StepOrder, target: Target) -> str:
    if order is StepOrder.AUTO:
        half = (target.replicas + 1) // 2
        return (
            f"auto: canary first when {target.stable} has >= {half} of {target.replicas} pods Ready, else stable first"
        )
    return f"{order.value} (fixed)"


def _target_text(target: Target, config: Config, now: datetime) -> list[str]:
    order = target.step_order or config.settings.step_order
    matchers = format_matchers(target.parsed)
    lines = [
        f"   - {target.name} (namespace {target.namespace}): alerts matching {matchers}",
        f"       rollback: scale {target.canary} to 0, {target.stable} to {target.replicas}",
        f"       order:    {_order_text(order, target)}",
        f"       slack:    {target.slack_channel or config.slack.default_channel}",
        f"       mute:     {_mute_text(target.mute, now)}",
    ]
    if not target.parsed:
        lines.append("       WARNING: no matchers, every alert belongs to this target")
    return lines


def _mode(config: Config, now: datetime) -> str:
    s = config.settings
    if not s.enabled:
        return "DISABLED (settings.enabled is false): decisions only, nothing is scaled"
    if s.mute is not None and s.mute.active(now):
        return "MUTED globally: decisions are posted, nothing is scaled"
    if s.dry_run:
        return "DRY RUN: decisions are posted, nothing is scaled"
    return "LIVE: matching alerts scale Deployments"


def _auth_text(config: Config, env: dict[str, str] | os._Environ[str]) -> list[str]:
    a = config.auth
    sources: list[str] = []
    set_or_not = "set" if env.get(a.bearer_token_env) else "NOT set"
    sources.append(f"bearer tokens from env {a.bearer_token_env} ({set_or_not})")
    for f in a.bearer_token_files:
        sources.append(f"bearer token file {f} ({'present' if f.exists() else 'MISSING'})")
    for user in a.basic_auth:
        sources.append(f"basic auth user {user.username}")
    lines = [" - auth: " + "; ".join(sources)]
    has_any = bool(env.get(a.bearer_token_env)) or any(f.exists() for f in a.bearer_token_files)
    if not has_any and not a.basic_auth:
        lines.append("   WARNING: no webhook credential found here; serve refuses to start without one")
    return lines


def describe(config: Config, *, now: datetime, env: dict[str, str] | os._Environ[str]) -> list[str]:
    """The human summary of a valid config, one line per fact."""
    s = config.settings
    lines = [f" - {len(config.rules)} rule(s), first match wins per alert:"]
    for i, rule in enumerate(config.rules, 1):
        lines += _rule_text(i, rule)
    lines.append(f" - {len(config.targets)} target(s), the only Deployments ever touched:")
    for target in config.targets:
        lines += _target_text(target, config, now)
    lines += [
        f" - mode: {_mode(config, now)}",
        f" - global mute: {_mute_text(s.mute, now)}",
        f" - order: {s.step_order.value} by default",
        f" - limits: {s.max_concurrent_rollbacks} rollbacks at once; halt after "
        f"{s.max_rollbacks_per_hour} rollbacks of one target within an hour",
        " - verification timeout: "
        + (
            f"{s.verification_timeout_seconds:g} s"
            if s.verification_timeout_seconds
            else "the stable's progressDeadlineSeconds, else 300 s"
        ),
        f" - slack: {config.slack.mode}"
        + (f", default channel {config.slack.default_channel}" if config.slack.mode != "off" else ""),
    ]
    lines += _auth_text(config, env)
    return lines
