"""`receiver check-config PATH... [--cluster] [-o json]`: validate config files and say
what they would do, and with --cluster whether the cluster and Slack would let them.

Like ``amtool check-config``: one ``Checking 'PATH'  SUCCESS`` or ``FAILED: reason``
line per file, then what was found, spelled out so a reviewer of a config change
sees its effect (which alerts roll back which Deployments, in which order, muted or
not, live or dry run) without running the receiver. Exit 2 if any file is invalid
(a configuration error, as for every command). Secrets are never printed, only
whether their sources are present.

``--cluster`` then asks, with the receiver's own credentials (kubeconfig or in-cluster
service account, the Slack token): do both Deployments of each target exist, may this
identity do every call a rollback makes (SelfSubjectAccessReview per verb and resource,
as ``kubectl auth can-i``), is the Lease namespace writable, does Slack accept the token
and know each channel. A table of checks (``-o json``: a list of objects); exit 1 when
any check fails. Nothing is changed: only reads and access reviews are sent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from receiver.domain.decisions import MuteScope, applied_mute
from receiver.domain.matchers import format_matchers
from receiver.domain.phases import PhaseKind, PhaseSpec, RolloutPhase, unreachable_phases
from receiver.domain.settings import Config, ConfigError, Mute, Rule, SlackSettings, StepOrder, Target, load_config
from receiver.domain.units import format_value

EXIT_OK, EXIT_CHECK_FAILED, EXIT_INVALID = 0, 1, 2
DEFAULT_REQUEST_TIMEOUT = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="config file(s) (default: --config)")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also check, with the receiver's own credentials, that both Deployments of every target "
        "exist, that RBAC allows every call a rollback makes, that the Lease namespace is writable, "
        "and that Slack accepts the token and knows each channel (exit 1 when a check fails)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="table (default): human summary and a table of checks; json: the checks as a JSON list",
    )


def run(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    as_json = args.output == "json"
    rows: list[CheckRow] = []
    configs: list[Config] = []
    invalid = 0
    for path in args.paths or [args.config]:
        config = _check_quietly(path, rows) if as_json else check_and_load(path, now=now, out=sys.stdout)
        if config is None:
            invalid += 1
        else:
            configs.append(config)
    if invalid:
        if as_json:
            print(json.dumps([asdict(r) for r in rows], indent=2))
        print(f"receiver: error: failed to validate {invalid} file(s)", file=sys.stderr)
        return EXIT_INVALID
    if args.cluster:
        import asyncio  # --cluster only: checking a file starts faster without it

        timeout = request_timeout_seconds(getattr(args, "request_timeout", None))
        for config in configs:
            rows += asyncio.run(
                cluster_checks(
                    config,
                    kubeconfig=getattr(args, "kubeconfig", None),
                    context=getattr(args, "context", None),
                    request_timeout=timeout,
                )
            )
    if as_json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    elif args.cluster:
        print(format_table(rows))
    failed = [r for r in rows if r.result == "fail"]
    if failed:
        print(f"receiver: error: {len(failed)} check(s) failed", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _check_quietly(path: Path, rows: list[CheckRow]) -> Config | None:
    """The file's verdict as rows (for -o json): config ok/fail, one warn row per warning."""
    try:
        config = load_config(path)
    except ConfigError as e:
        rows.append(CheckRow("config", "", "fail", str(e)))
        return None
    rows.append(CheckRow("config", "", "ok", f"{path}: valid"))
    rows += [CheckRow("config", "", "warn", w) for w in config.warnings()]
    return config


def check(
    path: Path,
    *,
    now: datetime,
    out: TextIO,
    env: dict[str, str] | None = None,
) -> bool:
    """Print the verdict and summary for one file; True when it is valid."""
    return check_and_load(path, now=now, out=out, env=env) is not None


def check_and_load(
    path: Path,
    *,
    now: datetime,
    out: TextIO,
    env: dict[str, str] | None = None,
) -> Config | None:
    """Print the verdict and summary for one file; the Config when it is valid."""
    from receiver.notify.secrets import slack_credentials_problem

    try:
        config = load_config(path)
    except ConfigError as e:
        first, *rest = str(e).splitlines()
        print(f"Checking '{path}'  FAILED: {first}", file=out)
        for line in rest:
            print(line, file=out)
        print(file=out)
        return None
    if (slack_problem := slack_credentials_problem(config, os.environ if env is None else env)) is not None:
        print(f"Checking '{path}'  FAILED: {slack_problem}", file=out)
        print(file=out)
        return None
    print(f"Checking '{path}'  SUCCESS", file=out)
    for warning in config.warnings():
        print(f"WARNING: {warning}", file=out)
    print("Found:", file=out)
    for line in describe(config, now=now, env=os.environ if env is None else env):
        print(line, file=out)
    print(file=out)
    return config


def _mute_text(mute: Mute | None, now: datetime) -> str:
    if mute is None:
        return "none"
    if mute.until is None:
        return f"ACTIVE, by {mute.by}, until removed ({mute.reason})"
    state = "ACTIVE" if mute.active(now) else "expired"
    return f"{state}, by {mute.by}, until {mute.until.isoformat()} ({mute.reason})"


def _target_mute_text(config: Config, target: Target, now: datetime) -> str:
    """The target's own mute, and whether the global one overrides it now (as decide does)."""
    applied = applied_mute(config.settings, target, now)
    if applied is None or applied.scope is MuteScope.TARGET:
        return _mute_text(target.mute, now)
    own = _mute_text(target.mute, now) if target.mute is not None else "none of its own"
    return f"{own}; muted by the global mute (by {applied.by})"


def _per_phase(rule: Rule, phases: tuple[PhaseSpec, ...]) -> str:
    """A rule's level in each listed phase, then the default for every other split."""
    parts = []
    for p in phases:
        level = rule.threshold_in(RolloutPhase(PhaseKind.PHASE, p.canary_replicas, p.of, name=p.name,
                                               display_name=p.display))
        parts.append(f"{p.display} {format_value(level.value if level else None, rule.unit)}")
    default = rule.threshold_in(None)
    parts.append(f"between or outside phases {format_value(default.value if default else None, rule.unit)}")
    return "; ".join(parts)


def _rule_text(i: int, rule: Rule, phases: tuple[PhaseSpec, ...] = ()) -> list[str]:
    when = format_matchers(rule.parsed)
    if rule.thresholds is not None:
        trigger = (
            f"rolls back when annotation {rule.value_annotation!r} is above the level of the "
            f"target's phase (unit {rule.unit}): {_per_phase(rule, phases)}"
        )
    elif rule.threshold is None:
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
        f"       mute:     {_target_mute_text(config, target, now)}",
        f"       phases:   {_phases_text(config, target)}",
    ]
    if never := unreachable_phases(target.replicas, config.phases_of(target)):
        lines.append(
            f"       never in: {', '.join(p.display for p in never)} (no whole number of canary pods "
            f"of {target.replicas} is that share): judged by the default thresholds there; "
            "list phases for this target"
        )
    return lines


def _phases_text(config: Config, target: Target) -> str:
    """The phases as canary pods of this target's full count, read from the live split."""
    own = "the target's phases" if target.phases is not None else "settings.phases"
    shown = [f"{p.display} = canary {p.share * target.replicas} of {target.replicas}"
             for p in config.phases_of(target) if (p.share * target.replicas).denominator == 1]
    return (", ".join(shown) or "none reachable") + f" ({own}; read from the canary's spec replicas)"


def _mode(config: Config, now: datetime) -> str:
    s = config.settings
    if not s.enabled:
        return "DISABLED (settings.enabled is false): decisions only, nothing is scaled"
    if applied_mute(s, None, now) is not None:
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
        lines += _rule_text(i, rule, s.phases)
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


# --- --cluster ---------------------------------------------------------------------------

Result = Literal["ok", "fail", "skip", "warn"]


@dataclass(frozen=True)
class CheckRow:
    """One line of the --cluster table (and one object of -o json)."""

    check: str
    target: str
    result: Result
    detail: str


@dataclass(frozen=True)
class Access:
    """One request a rollback makes, as SelfSubjectAccessReview resourceAttributes."""

    verb: str
    group: str
    resource: str
    namespace: str
    name: str = ""
    subresource: str = ""

    def __str__(self) -> str:
        """As `kubectl auth can-i` arguments, so a reader can paste them to ask again."""
        what = self.resource + (f".{self.group}" if self.group else "") + (f"/{self.name}" if self.name else "")
        sub = f" --subresource={self.subresource}" if self.subresource else ""
        return f"{self.verb} {what}{sub} -n {self.namespace}"


def required_access(config: Config, target: Target) -> list[tuple[str, Access]]:
    """(check name, access) for every call the receiver makes for ``target``.

    Read from receiver/kube/gateway.py and its callers: the executor reads both
    Deployments and annotates them (steps), scales them through the scale subresource,
    the TargetWatcher and the verifier list and watch Deployments and pods, the Lease is
    read, created and replaced (lease.py), listed and watched (TargetWatcher, /rollbacks),
    and Events are created (events.k8s.io/v1). Names are given where the code uses one, so
    a Role limited by resourceNames is judged as the API server will judge it.
    """
    from receiver.kube.lease import lease_name, lease_namespace  # the Kubernetes client: --cluster only

    ns, lns, lease = target.namespace, lease_namespace(config, target), lease_name(target)
    out: list[tuple[str, Access]] = []
    for name in (target.stable, target.canary):
        out += [
            ("can-i", Access("get", "apps", "deployments", ns, name)),
            ("can-i", Access("patch", "apps", "deployments", ns, name, "scale")),
            ("can-i", Access("patch", "apps", "deployments", ns, name)),
        ]
    out += [
        ("can-i", Access("list", "apps", "deployments", ns)),
        ("can-i", Access("watch", "apps", "deployments", ns)),
        ("can-i", Access("list", "", "pods", ns)),
        ("can-i", Access("watch", "", "pods", ns)),
        ("can-i", Access("create", "events.k8s.io", "events", ns)),
        ("lease-namespace", Access("create", "coordination.k8s.io", "leases", lns)),
        ("can-i", Access("get", "coordination.k8s.io", "leases", lns, lease)),
        ("can-i", Access("update", "coordination.k8s.io", "leases", lns, lease)),
        ("can-i", Access("list", "coordination.k8s.io", "leases", lns)),
        ("can-i", Access("watch", "coordination.k8s.io", "leases", lns)),
    ]
    return out




def request_timeout_seconds(value: object) -> float:
    """``--request-timeout`` as the CLI parsed it (seconds; 0 = none), else the CLI's 30 s."""
    if value is None:
        return DEFAULT_REQUEST_TIMEOUT
    from receiver.kube.retry import parse_duration

    seconds = float(value) if isinstance(value, int | float) else parse_duration(str(value))
    return seconds if seconds > 0 else 24 * 3600.0


def format_table(rows: list[CheckRow]) -> str:
    """kubectl-style columns: upper-case headers, each column padded to its widest cell + 3."""
    cells = [("CHECK", "TARGET", "RESULT", "DETAIL")] + [
        (r.check, r.target or "-", r.result, r.detail.replace("\n", " ")) for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    return "\n".join(
        "   ".join(c[i].ljust(widths[i]) for i in range(3)) + "   " + c[3] for c in cells
    )


async def cluster_checks(
    config: Config,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    env: dict[str, str] | os._Environ[str] | None = None,
) -> list[CheckRow]:
    """Every --cluster check for one valid config, in table order; ``request_timeout``
    bounds each request, as kubectl's flag does."""
    rows = await _kube_checks(config, kubeconfig, context, request_timeout)
    rows += await _slack_checks(config.slack, config, os.environ if env is None else env, request_timeout)
    rows.append(CheckRow("prometheus", "", "skip", "not configured (the config has no Prometheus section yet)"))
    return rows


async def _kube_checks(
    config: Config, kubeconfig: str | None, context: str | None, request_timeout: float
) -> list[CheckRow]:
    from kubernetes_asyncio.client import AuthorizationV1Api

    from receiver.kube import Kube, KubeError, RetryPolicy, kubeconfig_source, new_api_client

    try:
        api = await new_api_client(kubeconfig, context, pool_size=4)
    except Exception as e:
        where = kubeconfig_source(kubeconfig) or "in-cluster service account"
        return [CheckRow("cluster", "", "fail", f"cannot load the cluster credentials ({where}): {e}")]
    rows: list[CheckRow] = []
    try:
        kube = Kube(api, RetryPolicy(request_timeout_seconds=request_timeout,
                                     connect_timeout_seconds=min(request_timeout, 10.0)))
        authz = AuthorizationV1Api(api)
        unreachable: str | None = None
        asked: dict[Access, tuple[Result, str]] = {}

        async def deployment(target: Target, role: str, name: str) -> CheckRow:
            nonlocal unreachable
            check = f"deployment-{role}"
            if unreachable:
                return CheckRow(check, target.name, "skip", unreachable)
            try:
                # Listed by name, as the receiver's own watch sees it: the Role grants `get` only on
                # the Deployments it names, so a typo would otherwise read as 403, not "not found".
                found = await kube.once(f"list deployments {target.namespace} --field-selector metadata.name={name}",
                                        kube.apps.list_namespaced_deployment, target.namespace,
                                        field_selector=f"metadata.name={name}")
                items = found.get("items") or []
                if not items:
                    return CheckRow(check, target.name, "fail",
                                    f"deployment {target.namespace}/{name} not found (the {role} named in config)")
                obj = items[0]
            except KubeError as err:
                if err.status == 0:
                    unreachable = f"cluster unreachable: {err}"
                    where = api.configuration.host
                    return CheckRow(check, target.name, "fail", f"cannot reach {where}: {err.message}")
                if err.not_found:
                    return CheckRow(check, target.name, "fail",
                                    f"deployment {target.namespace}/{name} not found (the {role} named in config)")
                return CheckRow(check, target.name, "fail", str(err))
            spec = (obj.get("spec") or {}).get("replicas")
            ready = (obj.get("status") or {}).get("readyReplicas") or 0
            return CheckRow(check, target.name, "ok",
                            f"deployment {target.namespace}/{name}: {ready}/{spec if spec is not None else 1} ready")

        async def can_i(access: Access) -> tuple[Result, str]:
            if unreachable:
                return "skip", unreachable
            if access not in asked:
                attrs = {"verb": access.verb, "group": access.group, "resource": access.resource,
                         "namespace": access.namespace}
                if access.name:
                    attrs["name"] = access.name
                if access.subresource:
                    attrs["subresource"] = access.subresource
                body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                        "spec": {"resourceAttributes": attrs}}
                try:
                    review = await kube.once(f"create selfsubjectaccessreviews ({access})",
                                             authz.create_self_subject_access_review, body)
                except KubeError as err:
                    asked[access] = ("fail", f"cannot ask ({access}): {err}")
                else:
                    status = review.get("status") or {}
                    if status.get("allowed"):
                        asked[access] = ("ok", f"yes: {access}")
                    else:
                        why = status.get("reason") or status.get("evaluationError") or "no RBAC rule allows it"
                        asked[access] = ("fail", f"no: {access} ({why})")
            return asked[access]

        for target in config.targets:
            rows.append(await deployment(target, "stable", target.stable))
            rows.append(await deployment(target, "canary", target.canary))
            for check, access in required_access(config, target):
                result, detail = await can_i(access)
                rows.append(CheckRow(check, target.name, result, detail))
    finally:
        await api.close()
    return rows


_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")


def _secret(file: Path | None, env_name: str, env: dict[str, str] | os._Environ[str]) -> tuple[str, str]:
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip(), f"file {file}"
        except OSError as e:
            return "", f"file {file} ({e.strerror})"
    return env.get(env_name, "").strip(), f"env {env_name}"


async def _slack_checks(
    slack: SlackSettings, config: Config, env: dict[str, str] | os._Environ[str], request_timeout: float
) -> list[CheckRow]:
    if slack.mode in ("console", "off"):
        return [CheckRow("slack", "", "skip", f"slack.mode is {slack.mode}: nothing is posted to Slack")]
    if slack.mode == "webhook":
        url, source = _secret(slack.webhook_url_file, slack.webhook_url_env, env)
        if not url:
            return [CheckRow("slack", "", "fail", f"slack.mode is webhook but there is no webhook URL in {source}")]
        return [CheckRow("slack", "", "ok",
                         f"webhook URL found in {source} (not posted to: that would show in the channel)")]
    token, source = _secret(slack.token_file, slack.token_env, env)
    if not token:
        return [CheckRow("slack-auth", "", "fail", f"slack.mode is bot but there is no bot token in {source}")]

    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token=token, base_url=slack.api_url, timeout=int(max(request_timeout, 1)))
    try:
        auth = await client.auth_test()
    except SlackApiError as e:
        return [CheckRow("slack-auth", "", "fail", f"auth.test: {e.response.get('error')} (token from {source})")]
    except (OSError, TimeoutError) as e:
        return [CheckRow("slack-auth", "", "fail", f"cannot reach {slack.api_url}: {e or type(e).__name__}")]
    who = f"{auth.get('user')} in {auth.get('team')}"
    rows = [CheckRow("slack-auth", "", "ok", f"auth.test: {who} (token from {source})")]
    seen: dict[str, tuple[Result, str]] = {}
    for target in config.targets:
        channel = target.slack_channel or slack.default_channel
        if channel not in seen:
            seen[channel] = await _find_channel(client, channel)
        rows.append(CheckRow("slack-channel", target.name, *seen[channel]))
    return rows


async def _find_channel(client: Any, channel: str) -> tuple[Result, str]:
    """conversations.info for an id, else conversations.list pages until the name is seen."""
    from slack_sdk.errors import SlackApiError

    try:
        if _CHANNEL_ID.match(channel):
            found: dict[str, Any] | None = (await client.conversations_info(channel=channel)).get("channel")
        else:
            name, found, cursor = channel.lstrip("#"), None, None
            while found is None:
                page = await client.conversations_list(
                    types="public_channel,private_channel", exclude_archived=True, limit=200, cursor=cursor
                )
                found = next((c for c in page.get("channels") or [] if c.get("name") == name), None)
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
    except SlackApiError as e:
        error = e.response.get("error")
        hint = {"channel_not_found": "no such channel, or the bot cannot see it",
                "missing_scope": "the bot token needs channels:read (groups:read for private channels)"}
        return "fail", f"{channel}: {error}" + (f" ({hint[error]})" if error in hint else "")
    except (OSError, TimeoutError) as e:
        return "fail", f"{channel}: {e or type(e).__name__}"
    if found is None:
        return "fail", f"{channel}: no such channel among those the bot can see (channel_not_found)"
    detail = f"{channel} exists (id {found.get('id')})"
    if found.get("is_member") is False:
        return "warn", detail + "; the bot is not a member: /invite it, or grant chat:write.public"
    return "ok", detail
