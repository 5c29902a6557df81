"""`receiver serve`: wire the real adapters together and run until SIGTERM.

Start-up order matters for safety: the config must be valid and credentials present
before anything listens; unfinished rollbacks recorded in the cluster are resumed before
new webhooks are taken; on SIGTERM the listener closes first, then running rollbacks
get the grace period to reach a safe point (their state is in the Lease either way).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from receiver import logs
from receiver.config import ConfigError
from receiver.config_store import ConfigStore
from receiver.core.rollback import RollbackRecord, Step
from receiver.service import Service
from receiver.web.app import Runtime, make_app

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from receiver.executor import Executor
    from receiver.slack import Notifier
    from receiver.target_watcher import TargetWatcher

log = structlog.get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """serve's own flags; --config and the cluster flags come from cli.py."""
    p.add_argument("--listen", default="0.0.0.0:8080", metavar="HOST:PORT",
                   help="HOST:PORT to listen on (default 0.0.0.0:8080)")
    p.add_argument("--identity", default=None, help="lease holder identity (default: $POD_NAME or hostname)")
    p.add_argument(
        "--insecure", action="store_true", help="accept webhooks without credentials (demo and local testing only)"
    )
    p.add_argument("--log-format", choices=("json", "console", "auto"), default="auto",
                   help="log lines as JSON, for a terminal, or auto: JSON unless stderr is a terminal")
    p.add_argument("--log-level", type=str.lower, choices=logs.LEVELS, default="info",
                   help="least severe level logged (default info)")
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=25.0,
        help="seconds running rollbacks get to reach a safe point on SIGTERM",
    )


async def adopt_orphans(store: ConfigStore, watcher: TargetWatcher, executor: Executor) -> None:
    """Take over rollbacks whose receiver died, without waiting for a restart.

    Checked from the Lease watch's memory every third of a lease duration; only when a
    Lease holds an unfinished record that nobody renews does it touch the API (the
    executor then takes the Lease with client-go's rules, so two survivors cannot both
    adopt it).
    """
    while True:
        await asyncio.sleep(max(1.0, store.config.settings.lease_duration_seconds / 3))
        try:
            if watcher.orphaned():
                for task in await executor.resume_unfinished():
                    log.warning(
                        "adopted a rollback whose receiver stopped renewing its lease",
                        rollback_id=task.get_name().removeprefix("rollback "),
                    )
        except Exception as e:  # keep adopting; the next pass retries
            log.error("adopting orphaned rollbacks failed; will retry", error=str(e))


_background: set[asyncio.Task[object]] = set()


def install_sighup(store: ConfigStore) -> None:
    """SIGHUP reloads config.yaml, as Prometheus and Alertmanager do."""
    loop = asyncio.get_running_loop()

    def reload() -> None:
        task: asyncio.Task[object] = loop.create_task(store.reload("SIGHUP"))
        _background.add(task)  # keep a reference until done, and surface a crash in the log
        task.add_done_callback(_background.discard)
        task.add_done_callback(
            lambda t: (
                t.cancelled() or t.exception() is None or log.error("SIGHUP reload crashed", error=repr(t.exception()))
            )
        )

    loop.add_signal_handler(signal.SIGHUP, reload)


class KubeProbe:
    """Readiness check of the API server, cached briefly so probes cost no API load."""

    def __init__(self, api: ApiClient, ttl: float = 5.0) -> None:
        self._api = api
        self._ttl = ttl
        self._at = -1e9
        self._result: str | None = None

    async def __call__(self) -> str | None:
        if time.monotonic() - self._at < self._ttl:
            return self._result
        from kubernetes_asyncio.client import VersionApi

        try:
            await asyncio.wait_for(VersionApi(self._api).get_code(), timeout=3)
            self._result = None
        except Exception as e:
            self._result = f"Kubernetes API unreachable: {type(e).__name__}: {e}"[:300]
        self._at = time.monotonic()
        return self._result


@dataclass
class RunningReceiver:
    """A started receiver: what tests, the demo and serve need to reach and stop it."""

    url: str
    store: ConfigStore
    service: Service
    runner: web.AppRunner
    executor: Executor
    watcher: TargetWatcher
    notifier: Notifier
    api: ApiClient
    tasks: list[asyncio.Task[RollbackRecord]] = field(default_factory=list)
    adopter: asyncio.Task[None] | None = None
    stopped: bool = False

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking webhooks, give running rollbacks ``grace`` s, hand over the rest."""
        if self.stopped:
            return
        self.stopped = True
        await self.runner.cleanup()  # stop taking webhooks first
        await self.store.stop_watching()
        if self.adopter is not None:
            self.adopter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.adopter
        await self.executor.close(grace)
        await self.notifier.close(min(grace, 5.0))
        await self.watcher.stop()
        await self.api.close()


async def start_receiver(
    config_path: Path,
    listen: str = "127.0.0.1:0",
    *,
    insecure: bool = False,
    kubeconfig: Path | None = None,
    identity: str | None = None,
    env: dict[str, str] | None = None,
    watch_config: bool = True,
) -> RunningReceiver:
    """Build and start every part; raises ConfigError before listening if config is bad."""
    from receiver.executor import Executor, TargetWatcher
    from receiver.kube import new_api_client
    from receiver.lease_observations import LeaseObservations
    from receiver.slack import make_notifier

    store = ConfigStore(config_path, insecure=insecure, env=env)
    identity = identity or os.environ.get("POD_NAME") or socket.gethostname()
    api = await new_api_client(kubeconfig)
    # one record of when each Lease was seen to change, fed by the watcher's Lease watch
    # and the executor's reads: other holders' Leases expire by local time (client-go)
    observations = LeaseObservations()
    watcher = TargetWatcher(api, lambda: store.config, identity=identity, observations=observations)
    holder: dict[str, Service] = {}

    def on_change(record: RollbackRecord, step: Step | None) -> None:
        if "service" in holder:
            holder["service"].remember(record)
        notifier.rollback_changed(record, step)

    executor = Executor(api, lambda: store.config, identity, on_change=on_change, observations=observations)
    notifier = make_notifier(store.config.slack, env, on_thread=executor.set_slack_thread, config=lambda: store.config)
    service = Service(lambda: store.config, watcher, executor, notifier)
    holder["service"] = service
    await notifier.start()
    await watcher.start()
    tasks = await executor.resume_unfinished()
    try:  # so an alert resolving after a restart still gets its follow-up in the right thread
        for record in sorted(await executor.list_rollbacks(), key=lambda r: r.started_at):
            service.remember(record)
    except Exception as e:  # the history is a nicety; never a reason not to start
        log.warning("could not read past rollbacks at start-up", error=repr(e))

    runtime = Runtime(
        store=store,
        service=service,
        list_rollbacks=executor.list_rollbacks,
        kube_check=KubeProbe(api),
        watch_check=watcher.healthy,
        running_rollbacks=lambda: executor.running,
    )
    # Shutdown budget (Kubernetes' default grace is 30 s): 5 s to finish HTTP requests,
    # --shutdown-grace (25 s) for running rollbacks, then Leases are released (or expire).
    runner = web.AppRunner(make_app(runtime), access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    site = web.TCPSite(runner, host or "0.0.0.0", int(port))
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    bound_host, bound_port = sock.getsockname()[:2]
    if watch_config:
        store.start_watching()
    adopter = asyncio.create_task(adopt_orphans(store, watcher, executor), name="adopt-orphans")
    url = f"http://{bound_host}:{bound_port}"
    log.info(
        "receiver listening",
        url=url,
        identity=identity,
        targets=[t.name for t in store.config.targets],
        resumed=len(tasks),
    )
    return RunningReceiver(url, store, service, runner, executor, watcher, notifier, api, tasks, adopter)


async def _serve(args: argparse.Namespace) -> int:
    try:
        rx = await start_receiver(
            args.config, args.listen, insecure=args.insecure, kubeconfig=args.kubeconfig, identity=args.identity
        )
    except ConfigError as e:
        log.error("cannot start", error=str(e))
        return 2
    install_sighup(rx.store)
    gc.freeze()  # start-up objects live forever: keep them out of every later collection
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", grace_seconds=args.shutdown_grace)
    try:
        await rx.stop(args.shutdown_grace)
    except Exception as e:  # a replica adopts whatever was not handed over
        log.error("unclean shutdown; unfinished rollbacks will be adopted from their Leases", error=repr(e))
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    logs.configure(json={"json": True, "console": False}.get(args.log_format), level=args.log_level)
    return asyncio.run(_serve(args))
