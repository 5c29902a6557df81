"""The `receiver` command: serve | check-config | status | history | rollback | promote | mute |
unmute | breaker | demo | sim.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them. Only the chosen command's module is
imported (the help listing needs none), and this file imports nothing heavy itself, so a
command starts as fast as what it needs (kubectl answers in 0.05 s; people script these).
A command's options sit next to its code. The flags several commands share (--config, and
kubectl's --kubeconfig / --context / --request-timeout for those that talk to the
cluster) are defined once here, as parent parsers, so they read and default alike.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from receiver import __version__
from receiver.cli import simulator

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from receiver.kube import Kube
    from receiver.kube.errors import KubeError
    from receiver.kube.retry import OnRetry, RetryPolicy

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_CODES = """exit status:
  0  success
  1  the command ran and failed (rollback not verified, cluster unreachable, a check-config
     --cluster check failed, promote's gate not passed or not measured without --force)
  2  usage or configuration error (bad flag, bad config, kubeconfig, port in use)
  3  rollback / promote: another rollback or promotion of the target is running (nothing was changed)"""
DEFAULT_REQUEST_TIMEOUT = "30s"

# name -> (module, help, shared flag groups: "config", "cluster")
COMMANDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "serve": ("receiver.cli.serve", "run the webhook receiver", ("config", "cluster")),
    "check-config": ("receiver.cli.check_config", "validate a config file and print what it would do",
                     ("config", "cluster")),
    "demo": ("receiver.cli.demo", "run the whole chain on a simulated cluster, live in the terminal", ()),
    "sim": ("receiver.cli.sim", "serve a simulated Kubernetes API (and fake Slack) on loopback", ()),
    "rollback": ("receiver.cli.rollback", "roll a target back now, with live progress", ("config", "cluster")),
    "status": ("receiver.cli.status", "show each target's phase, replicas, mute, rollback and breaker",
               ("config", "cluster")),
    "history": ("receiver.cli.history", "list past rollbacks with their timelines", ("config", "cluster")),
    "mute": ("receiver.cli.mute", "mute a target (or --all) for a while, on every replica", ("config", "cluster")),
    "unmute": ("receiver.cli.unmute", "remove a run-time mute", ("config", "cluster")),
    "breaker": ("receiver.cli.breaker", "close the blast-radius breaker (automatic rollbacks resume)",
                ("config", "cluster")),
    "promote": ("receiver.cli.promote", "move a target one rollout phase forward after the weekly gate",
                ("config", "cluster")),
}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def request_timeout(text: str) -> float:
    """argparse type for kubectl's --request-timeout ("30s", "1m", 0 = none)."""
    from receiver.kube.retry import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def default_config() -> Path:
    """$RECEIVER_CONFIG, else config.yaml in the working directory."""
    return Path(os.environ.get("RECEIVER_CONFIG") or "config.yaml")


def _config_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", type=Path, default=default_config(), metavar="PATH",
                   help="config file (default: $RECEIVER_CONFIG, else config.yaml)")
    return p


def _cluster_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("cluster (as kubectl)")
    g.add_argument("--kubeconfig", default=None, metavar="PATH",
                   help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster)")
    g.add_argument("--context", default=None, metavar="NAME",
                   help="kubeconfig context (default: its current-context)")
    g.add_argument("--request-timeout", type=request_timeout, default=DEFAULT_REQUEST_TIMEOUT,
                   metavar="DURATION",
                   help="how long to wait for the cluster, as kubectl (e.g. 30s, 1m; 0 = no timeout; "
                        f"default {DEFAULT_REQUEST_TIMEOUT}): rollback gives up after it, retries "
                        "included; serve bounds each API request by it")
    return p


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only``, just that command's module is imported (the others
    are listed with their help line, which is all `receiver --help` shows)."""
    parser = Parser(prog="receiver", description=__doc__.splitlines()[0], epilog=EXIT_CODES,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"receiver {__version__}",
                        help="print the version and exit")
    sub: Any = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared: dict[str, Callable[[], argparse.ArgumentParser]] = {"config": _config_flags,
                                                                "cluster": _cluster_flags}
    for name, (module, help_text, groups) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue  # command not built yet
            raise
        # "resolve": a command that defines one of the shared flags itself keeps its own
        # (fresh parents per command: resolving edits the parent's actions in place)
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES,
                           parents=[shared[g]() for g in groups], conflict_handler="resolve",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


# -- failing fast against the cluster, in kubectl's words -------------------------------


def retry_printer(host: str, out: TextIO) -> OnRetry:
    """Print each retry of a cluster request as it happens."""

    from receiver.kube.retry import reach_problem

    def on_retry(what: str, err: KubeError, left: float) -> None:
        problem = f"cannot reach {host}: {reach_problem(err)}" if err.status == 0 else f"{what}: {err}"
        more = "until interrupted" if math.isinf(left) else f"for {max(left, 0):.0f} s more"
        print(f"{problem}; retrying {more}", file=out, flush=True)

    return on_retry


def cluster_retry(args: argparse.Namespace, out: TextIO, host: str) -> RetryPolicy:
    """The retry policy for a CLI command: bounded by --request-timeout, retries printed."""
    from receiver.kube.retry import RetryPolicy

    return RetryPolicy().for_request_timeout(args.request_timeout, retry_printer(host, out))


def unreachable(host: str, err: KubeError, timeout: float) -> str:
    """The one sentence a command ends with when the cluster did not answer."""
    from receiver.kube.retry import reach_problem

    if err.status == 0:
        gave_up = f" (gave up after {timeout:g} s, --request-timeout)" if timeout > 0 else ""
        return f"Unable to connect to the server {host}: {reach_problem(err)}{gave_up}"
    if err.status == 401:
        return f"error: You must be logged in to the server {host} (Unauthorized)"
    return f"error: {err}"


class CommandExit(Exception):
    """Ends a command with this exit status; what went wrong is already printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Cluster:
    """What a command talks to once the API server answered."""

    api: ApiClient
    retry: RetryPolicy
    host: str
    kube: Kube


@contextlib.asynccontextmanager
async def cluster(args: argparse.Namespace, err: TextIO | None = None) -> AsyncIterator[Cluster]:
    """Reach the cluster for one command as kubectl would: a kubeconfig problem exits 2, an
    API server that does not answer (before or inside the block) exits 1 with kubectl's
    sentence, each retry printed as it happens; the client is closed after."""
    from receiver.kube import Kube, KubeError, new_api_client
    from receiver.kube.client import KubeconfigError

    out = sys.stderr if err is None else err
    try:
        api = await new_api_client(args.kubeconfig, args.context)
    except KubeconfigError as e:
        print(f"error: {e}", file=out)
        raise CommandExit(EXIT_USAGE) from None
    host = str(api.configuration.host)
    try:
        retry = cluster_retry(args, out, host)
        if (problem := await reach(api, retry)) is not None:
            print(unreachable(host, problem, args.request_timeout), file=out)
            raise CommandExit(EXIT_FAILED)
        try:
            yield Cluster(api, retry, host, Kube(api, retry))
        except KubeError as e:
            print(unreachable(host, e, args.request_timeout), file=out)
            raise CommandExit(EXIT_FAILED) from None
    finally:
        await api.close()


async def reach(api: ApiClient, policy: RetryPolicy) -> KubeError | None:
    """GET /version, as kubectl does first: None when the API server answers."""
    from kubernetes_asyncio.client import VersionApi

    from receiver.kube import Kube, KubeError

    try:
        await Kube(api, policy).call("get version", VersionApi(api).get_code)
    except KubeError as e:
        return e
    return None


def chosen_command(argv: Sequence[str]) -> str:
    """The command named in argv ("" for none: `receiver --help`, `--version`, a typo)."""
    first = next((a for a in argv if not a.startswith("-")), "")
    return first if first in COMMANDS else ""


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words and (missing := simulator.missing(words[0])) is not None:
        print(missing, file=sys.stderr)  # before parsing: the simulator's own flags are unknown here
        return EXIT_USAGE
    args = build_parser(only=chosen_command(words)).parse_args(words)
    try:
        return int(args._run(args))
    except CommandExit as e:
        return e.code


if __name__ == "__main__":
    sys.exit(main())
