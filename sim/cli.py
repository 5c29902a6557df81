"""`receiver sim`: serve a seeded simulated cluster (and optionally fake Slack) on
loopback until interrupted, with a kubeconfig that kubectl and the receiver can use."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import tempfile
from pathlib import Path
from typing import Any

from sim.kube import KubeSim


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifests",
        type=Path,
        default=None,
        help="folder (or file) of Kubernetes YAML to seed from (default: the finance-service week-1 example)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default 0: pick a free one)")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="where to write the kubeconfig (default: a file in a temp dir)",
    )
    parser.add_argument(
        "--ready-delay",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="seconds before a new pod becomes Ready (default 2)",
    )
    parser.add_argument(
        "--slack-port",
        type=int,
        default=None,
        metavar="N",
        help="also serve the fake Slack API on this port (0 = pick one)",
    )


async def serve(args: argparse.Namespace, stop: asyncio.Event | None = None) -> int:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    sim = KubeSim(ready_delay=args.ready_delay, termination_grace=min(args.ready_delay, 1.0))
    sim.load_manifests(args.manifests or KubeSim.default_manifests())
    url = await sim.start(args.host, args.port)
    kubeconfig = args.kubeconfig or Path(tempfile.mkdtemp(prefix="receiver-sim-")) / "kubeconfig"
    sim.write_kubeconfig(kubeconfig)
    slack: Any = None
    print(f"Kubernetes API simulator listening on {url}", flush=True)
    print(f"kubeconfig written to {kubeconfig}", flush=True)
    print(f"  kubectl --kubeconfig {kubeconfig} get deploy,pods", flush=True)
    print(f"  export KUBECONFIG={kubeconfig}", flush=True)
    try:
        if args.slack_port is not None:
            from sim.slack import FakeSlack

            slack = FakeSlack(auto_create_channels=True)
            slack_url = await slack.start(args.host, args.slack_port)
            print(f"fake Slack API listening on {slack_url}", flush=True)
            print(f"  conversations: curl {slack_url}/_sim/messages", flush=True)
            print(f"  receiver config: slack: {{mode: bot, api_url: {slack.api_url}}}  "
                  f"and SLACK_BOT_TOKEN={slack.token}", flush=True)
        print("Press Ctrl+C to stop.", flush=True)
        await stop.wait()
    finally:
        if slack is not None:
            await slack.stop()
        await sim.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    print("simulator stopped", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(serve(args))
