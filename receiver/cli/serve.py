"""`receiver serve`: wire the real adapters together and run until SIGTERM.

Start-up order matters for safety: the config must be valid and credentials present
before anything listens; it then listens at once, cluster or not (a liveness probe must
not kill a pod whose API server is down), and answers 503 to webhooks until the cluster
has been reached and unfinished rollbacks recorded there resumed; on SIGTERM the
listener closes first, then running rollbacks get the grace period to reach a safe
point (their state is in the Lease either way).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from receiver import logs
from receiver.config.credentials import AdminAccess
from receiver.config.store import ConfigStore
from receiver.domain.rollback import RollbackRecord, Step
from receiver.domain.settings import Config, ConfigError, Target
from receiver.http.app import Runtime, make_app
from receiver.http.handlers import CLUSTER_OBJECTS
from receiver.http.server import GuardedAppRunner
from receiver.intake.deliveries import Service
from receiver.kube.retry import reach_problem
from receiver.metrics import Metrics
from receiver.status.views import read_objects

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from receiver.actions import Actions
    from receiver.http.slack_actions import ActionsPort
    from receiver.http.slack_door import SlackDoor
    from receiver.kube.shared_state import SharedStateStore
    from receiver.kube.targets import TargetWatcher
    from receiver.notify.factory import Notifier
    from receiver.rollback.executor import Executor

log = structlog.get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """serve's own flags; --config and the cluster flags come from cli.py."""
    p.add_argument("--listen", type=listen_address, default="0.0.0.0:8080", metavar="HOST:PORT",
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


async def adopt_orphans(store: ConfigStore, watcher: TargetWatcher, executor: Executor,
                        connected: asyncio.Event) -> None:
    """Take over rollbacks whose receiver died, without waiting for a restart.

    Checked from the Lease watch's memory every third of a lease duration; only when a
    Lease holds an unfinished record that nobody renews does it touch the API (the
    executor then takes the Lease with client-go's rules, so two survivors cannot both
    adopt it). Starts once ``connected`` is set (the watches started, our own rollbacks resumed).
    """
    await connected.wait()
    while True:
        await asyncio.sleep(max(1.0, store.config.settings.lease_duration_seconds / 3))
        try:
            if watcher.orphaned():
                for task in await executor.resume_unfinished():
                    log.warning(
                        "rollback_adopted",
                        rollback_id=task.get_name().removeprefix("rollback "),
                    )
        except Exception as e:  # keep adopting; the next pass retries
            log.error("rollback_adoption_failed", error=str(e))


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
                t.cancelled() or t.exception() is None or log.error("sighup_reload_crashed", error=repr(t.exception()))
            )
        )

    loop.add_signal_handler(signal.SIGHUP, reload)


class ClusterLink:
    """Whether the API server answers, checked in the background every few seconds.

    /health/ready reads the last result, so probes cost no API load. An outage is
    logged at warning when it starts and then at most once per ``warn_every`` seconds
    (not a line per retry); the recovery is logged once.
    """

    def __init__(self, api: ApiClient, *, interval: float = 5.0, warn_every: float = 60.0,
                 timeout: float = 3.0) -> None:
        self._api = api
        self.timeout = timeout
        self.host = api.configuration.host
        self.interval = interval
        self.warn_every = warn_every
        self.error: str | None = f"Kubernetes API {self.host} not reached yet"
        self.reachable = asyncio.Event()
        self._down_since: float | None = None
        self._warned_at = -math.inf
        self._failures = 0

    async def check(self) -> str | None:
        """Ask the API server once (GET /version); None when it answered."""
        from kubernetes_asyncio.client import VersionApi

        try:
            await asyncio.wait_for(VersionApi(self._api).get_code(), timeout=self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._failed(e)
        else:
            self._answered()
        return self.error

    def _failed(self, e: BaseException) -> None:
        now = time.monotonic()
        self._failures += 1
        if self._down_since is None:
            self._down_since = now
        status = getattr(e, "status", None)
        problem = f"{status} {getattr(e, 'reason', '')}".strip() if status else reach_problem(e)
        self.error = f"Kubernetes API {self.host} unreachable: {problem}"[:300]
        self.reachable.clear()
        if now - self._warned_at >= self.warn_every:
            self._warned_at = now
            log.warning("kube_unreachable", url=self.host, error=problem, attempts=self._failures,
                        down_seconds=round(now - self._down_since, 1),
                        next_report_seconds=self.warn_every)

    def _answered(self) -> None:
        if self._down_since is not None:
            log.info("kube_reachable", url=self.host, attempts=self._failures,
                     down_seconds=round(time.monotonic() - self._down_since, 1))
        self._down_since, self._failures, self._warned_at = None, 0, -math.inf
        self.error = None
        self.reachable.set()

    async def run(self) -> None:
        """Check until cancelled: every ``interval`` s, sooner (with backoff) while down."""
        attempt = 0
        while True:
            if await self.check() is None:
                attempt = 0
                await asyncio.sleep(self.interval)
            else:
                attempt += 1
                await asyncio.sleep(min(self.interval, 0.2 * 2 ** min(attempt, 5)))

    async def __call__(self) -> str | None:
        return self.error


class RollbackChanges:
    """The executor's ``on_change``, bound late to what is built after it.

    The executor must exist before the notifier (which calls back into it with Slack
    thread ids) and the intake service (which drives it); both want to hear of every
    change it makes. They subscribe here once built, in the order they are told.
    """

    def __init__(self) -> None:
        self._listeners: list[Callable[[RollbackRecord, Step | None], None]] = []

    def subscribe(self, listener: Callable[[RollbackRecord, Step | None], None]) -> None:
        self._listeners.append(listener)

    def __call__(self, record: RollbackRecord, step: Step | None) -> None:
        for listener in self._listeners:
            listener(record, step)


@dataclass
class ShutdownBudget:
    """Seconds running rollbacks get at shutdown: set by ``RunningReceiver.stop`` before the
    teardown reads it; 0 for a start that fails (nothing is running yet)."""

    grace: float = 0.0


@dataclass
class RunningReceiver:
    """A started receiver: what tests, the demo and serve need to reach and stop it.

    Every part started has its stop registered on ``stack`` right after it starts, so
    ``stop`` tears down in the reverse order: the listener first, the API client last.
    """

    url: str
    store: ConfigStore
    service: Service
    runner: web.AppRunner
    executor: Executor
    watcher: TargetWatcher
    notifier: Notifier
    api: ApiClient
    metrics: Metrics
    stack: contextlib.AsyncExitStack
    tasks: list[asyncio.Task[RollbackRecord]] = field(default_factory=list)
    adopter: asyncio.Task[None] | None = None
    stopped: bool = False
    link: ClusterLink | None = None
    # checks the API server, then starts what needs the cluster (watches, resuming)
    connecting: list[asyncio.Task[None]] = field(default_factory=list)
    budget: ShutdownBudget = field(default_factory=ShutdownBudget)
    shared: SharedStateStore | None = None  # run-time mutes and the breaker, shared by every replica
    actions: Actions | None = None  # the people's door (HTTP, Slack)
    slack: SlackDoor | None = None  # Slack actions, when set up

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking webhooks, give running rollbacks ``grace`` s, hand over the rest."""
        if self.stopped:
            return
        self.stopped = True
        self.budget.grace = grace
        await self.stack.aclose()


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (HOST may be empty for all addresses); ValueError names what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid --listen {text!r}: expected HOST:PORT, e.g. 0.0.0.0:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


def listen_address(text: str) -> str:
    """argparse type for --listen."""
    try:
        parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


class CannotListen(Exception):
    """The listening socket could not be opened (port in use, address not here)."""


NO_TIMEOUT = 1e9  # --request-timeout 0: aiohttp needs a number
NEEDS_CLUSTER = frozenset({"/webhook", "/rollbacks"})


def cluster_gate(link: ClusterLink, connected: asyncio.Event, store: ConfigStore) -> Middleware:
    """Answer 503 to requests that need the cluster until it has been reached and the
    start-up work done: Alertmanager retries a 503, so no alert is lost meanwhile.
    Credentials are judged first: a wrong token hears 401/403 (never retried, and it
    learns nothing of the cluster) whatever the cluster's state."""

    def authorized(request: web.Request) -> bool:
        header = request.headers.get("Authorization")
        if request.path == "/webhook":
            return store.credentials.webhook_allowed(header)
        return store.credentials.admin_access(header) is AdminAccess.GRANTED

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not connected.is_set() and request.path in NEEDS_CLUSTER and authorized(request):
            why = link.error or "resuming unfinished rollbacks"
            return web.json_response({"status": "not ready", "error": f"waiting for the cluster: {why}"},
                                     status=503, headers={"Retry-After": "10"})
        return await handler(request)

    return gate


async def start_receiver(
    config_path: Path,
    listen: str = "127.0.0.1:0",
    *,
    insecure: bool = False,
    kubeconfig: Path | str | None = None,
    identity: str | None = None,
    env: dict[str, str] | None = None,
    watch_config: bool = True,
    context: str | None = None,
    wait_for_cluster: bool = True,
    request_timeout: float | None = None,
    metrics: Metrics | None = None,
    actions: ActionsPort | None = None,
) -> RunningReceiver:
    """Build and start every part; raises ConfigError before listening if config is bad,
    KubeconfigError if the cluster cannot be found, CannotListen if the port is taken.

    It listens before the cluster is reached: /health/live answers at once and
    /health/ready says what is missing. ``wait_for_cluster`` (tests, the demo) returns
    only once the cluster has been reached and unfinished rollbacks resumed; `receiver
    serve` does that in the background. Every part counts into ``metrics`` (a fresh set
    when none is given, e.g. one per test) and /metrics serves it. Slack's buttons and
    /rollback act through the same Actions door as the CLI and HTTP; ``actions`` replaces
    it for Slack only (a test's recorder).
    """
    from receiver.actions import Actions
    from receiver.http.health import SLACK_CHECK
    from receiver.http.slack_door import build_slack_door, slack_secrets
    from receiver.kube import Kube, RetryPolicy, new_api_client
    from receiver.kube.lease import LeaseObservations
    from receiver.kube.shared_state import SharedStateStore
    from receiver.notify.factory import make_notifier, slack_credentials_problem
    from receiver.rollback.executor import Executor, TargetWatcher

    metrics = metrics or Metrics.create()
    store = ConfigStore(config_path, insecure=insecure, env=env, metrics=metrics)
    if (slack_problem := slack_credentials_problem(store.config, os.environ if env is None else env)) is not None:
        raise ConfigError(slack_problem)  # before any client exists: nothing to close
    slack_actions = slack_secrets(store.config, os.environ if env is None else env)  # ConfigError if half set up
    identity = identity or os.environ.get("POD_NAME") or socket.gethostname()
    host, port = parse_listen(listen)
    retry = RetryPolicy()
    if request_timeout is not None:
        per_request = request_timeout if request_timeout > 0 else NO_TIMEOUT
        retry = RetryPolicy(request_timeout_seconds=per_request,
                            connect_timeout_seconds=min(retry.connect_timeout_seconds, per_request))
    # Each part's stop is pushed right after it starts; AsyncExitStack runs them in reverse.
    # Shutdown budget (Kubernetes' default grace is 30 s): 5 s to finish HTTP requests,
    # --shutdown-grace (25 s) for running rollbacks, then Leases are released (or expire).
    stack = contextlib.AsyncExitStack()
    budget = ShutdownBudget()
    try:
        api = await new_api_client(kubeconfig, context)
        stack.push_async_callback(api.close)
        # one record of when each Lease was seen to change, fed by the watcher's Lease watch
        # and the executor's reads: other holders' Leases expire by local time (client-go)
        observations = LeaseObservations()
        watcher = TargetWatcher(api, lambda: store.config, identity=identity, observations=observations,
                                kube=Kube(api, retry, metrics=metrics))
        stack.push_async_callback(watcher.stop)  # its watches start once the cluster answers
        changes = RollbackChanges()
        executor = Executor(api, lambda: store.config, identity, on_change=changes, observations=observations,
                            retry=retry, metrics=metrics)
        notifier = make_notifier(store.config.slack, env, on_thread=executor.set_slack_thread,
                                 config=lambda: store.config, metrics=metrics)
        probe, recovery = None, None
        if (prom_settings := store.config.prometheus) is not None:
            from receiver.intake.canary_probe import StableProbe
            from receiver.prometheus.client import PrometheusClient
            from receiver.rollback.recovery import RecoveryWatcher

            prom = await stack.enter_async_context(PrometheusClient(prom_settings))
            probe = StableProbe(prom, prom_settings.decision_wait_seconds)
            recovery = RecoveryWatcher(prom, lambda: store.config, changes, executor.save_recovery, metrics=metrics)
            stack.push_async_callback(recovery.close)
        from receiver.domain.canary_check import last_replicas_change

        def canary_scaled_at(t: Target) -> datetime | None:
            return last_replicas_change(watcher.deployment(t.namespace, t.canary))

        shared = SharedStateStore(Kube(api, retry, metrics=metrics), lambda: store.config)
        stack.push_async_callback(shared.stop)  # its watch starts once the cluster answers
        shared.subscribe(lambda state: breaker_gauge(metrics, store.config, state.breaker.is_open))
        # both pre-checks come with Prometheus: without it, decisions read exactly as before
        service = Service(lambda: store.config, watcher, executor, notifier, metrics=metrics, shared=shared,
                          probe=probe, canary_scaled_at=canary_scaled_at if probe is not None else None)
        people = Actions(Kube(api, retry, metrics=metrics), lambda: store.config, shared, notifier, executor,
                         identity=identity)
        changes.subscribe(lambda record, _step: service.remember(record))  # a resolved alert finds its thread
        changes.subscribe(notifier.rollback_changed)
        if recovery is not None:
            watcher_of_recovery = recovery

            def watch_recovery(record: RollbackRecord, _step: Step | None) -> None:
                watcher_of_recovery.watch(record)  # starts only once, after a verified rollback

            changes.subscribe(watch_recovery)
        await notifier.start()
        stack.push_async_callback(lambda: notifier.close(min(budget.grace, 5.0)))
        # running rollbacks get the grace, then are handed over with their Leases released
        stack.push_async_callback(lambda: executor.close(budget.grace))

        link = ClusterLink(api, timeout=min(3.0, retry.request_timeout_seconds))
        connected = asyncio.Event()
        resumed: list[asyncio.Task[RollbackRecord]] = []

        async def connect() -> None:
            """Once the API server answers: watches, resumed rollbacks, past records."""
            await link.reachable.wait()
            await shared.start()
            try:  # decisions after start-up see run-time mutes and the breaker
                await shared.wait_synced(5)
            except Exception as e:  # refused (RBAC) or slow: /health says so; never a reason not to start
                log.error("shared_state_unavailable", error=str(e) or type(e).__name__)
            await watcher.start()
            resumed.extend(await executor.resume_unfinished())
            try:  # so an alert resolving after a restart still gets its follow-up in the right thread
                past = sorted(await executor.list_rollbacks(), key=lambda r: r.started_at)
                for record in past:
                    service.remember(record)
                if recovery is not None:  # left watching by a receiver that stopped: settled as unknown
                    await recovery.settle_abandoned(past)
            except Exception as e:  # the history is a nicety; never a reason not to start
                log.warning("past_rollbacks_unreadable", error=repr(e))
            connected.set()
            log.info("cluster_connected", url=link.host, resumed=len(resumed))

        async def kube_check() -> str | None:
            if link.error is not None:
                return link.error
            return None if connected.is_set() else "starting: resuming unfinished rollbacks"

        runtime = Runtime(
            store=store,
            service=service,
            list_rollbacks=executor.list_rollbacks,
            kube_check=kube_check,
            watch_check=watcher.healthy,
            running_rollbacks=lambda: executor.running,
            actions=people,
        )
        app = make_app(runtime)
        app[SLACK_CHECK] = getattr(notifier, "problem", lambda: None)  # lasting Slack failures: /health degraded
        app[CLUSTER_OBJECTS] = lambda: read_objects(watcher.kube, store.config)  # GET /targets
        app.middlewares.append(cluster_gate(link, connected, store))
        # Slack actions (buttons, /rollback): Socket Mode or POST /slack/events, one dispatcher
        slack_door = build_slack_door(slack_actions, lambda: store.config, getattr(notifier, "client", None),
                                      actions=people if actions is None else actions,
                                      list_rollbacks=executor.list_rollbacks,
                                      acknowledge=getattr(notifier, "acknowledge", None),
                                      set_problem=getattr(notifier, "set_problem", None),
                                      clear_problem=getattr(notifier, "clear_problems", None),
                                      read_objects=lambda: read_objects(watcher.kube, store.config))
        if slack_door is not None:
            notifier.actions_enabled = True  # type: ignore[attr-defined]  # the bot: messages carry buttons
            if slack_door.events is not None:
                app.router.add_post("/slack/events", slack_door.events.handle)
        # the background work below starts once listening, and stops right after the listener
        background = await stack.enter_async_context(contextlib.AsyncExitStack())
        # header/body read timeouts and a connection cap, as a reverse proxy would (http/server.py);
        # its cleanup runs first on stop: no webhook is taken while the rest stops
        runner = GuardedAppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as e:
            why = (e.strerror or str(e)).rsplit(": ", 1)[-1].lower()  # "address already in use"
            raise CannotListen(f"cannot listen on {listen}: {why}") from e
        if slack_door is not None:
            await slack_door.start()
            stack.push_async_callback(slack_door.close)  # before the listener: no Slack request meanwhile
        adopter = asyncio.create_task(adopt_orphans(store, watcher, executor, connected), name="adopt-orphans")
        background.push_async_callback(_cancel, adopter)
        expiries = asyncio.create_task(announce_expiries(people, shared.clock), name="mute-expiries")
        background.push_async_callback(_cancel, expiries)
        if watch_config:
            store.start_watching()
            background.push_async_callback(store.stop_watching)
        connecting = [asyncio.create_task(link.run(), name="cluster-link"),
                      asyncio.create_task(connect(), name="connect")]
        for task in connecting:
            background.push_async_callback(_cancel, task)
        connecting[1].add_done_callback(
            lambda t: t.cancelled() or t.exception() is None
            or log.error("start_up_failed", error=repr(t.exception())))
    except BaseException:
        await stack.aclose()
        raise
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{bound_host}:{bound_port}"
    rx = RunningReceiver(url, store, service, runner, executor, watcher, notifier, api, metrics, stack,
                         tasks=resumed, adopter=adopter, link=link, connecting=connecting, budget=budget,
                         shared=shared, actions=people,
                         slack=slack_door)
    log.info(
        "receiver_listening",
        url=url,
        identity=identity,
        targets=[t.name for t in store.config.targets],
    )
    if (prom_settings := store.config.prometheus) is not None:  # said once, after the line tools wait for
        log.info("prometheus_configured", url=prom_settings.url)
    else:
        log.info("prometheus_not_configured",
                 skipped="recovery confirmation and the is-it-the-canary check (config: prometheus.url)")
    if wait_for_cluster:
        try:
            await asyncio.shield(rx.connecting[1])
        except BaseException:
            await rx.stop(0)
            raise
    return rx


def breaker_gauge(metrics: Metrics, config: Config, is_open: bool) -> None:
    """receiver_breaker_open{target}: 1 for every target while the breaker is open (every
    automatic rollback is stopped), set from the shared state, so every replica agrees."""
    for t in config.targets:
        metrics.breaker_open.labels(t.name).set(1 if is_open else 0)


async def announce_expiries(actions: Actions, clock: Callable[[], datetime], interval: float = 1.0) -> None:
    """Announce run-time mutes as they expire (once across replicas: Actions.announce_expired)."""
    since = clock()
    while True:
        await asyncio.sleep(interval)
        now = clock()
        try:
            await actions.announce_expired(since, now)
        except Exception as e:  # announcing is a nicety: keep looking
            log.warning("mute_expiry_not_announced", error=repr(e))
            continue
        since = now


async def _serve(args: argparse.Namespace) -> int:
    from receiver.kube.client import KubeconfigError

    try:
        rx = await start_receiver(
            args.config, args.listen, insecure=args.insecure, kubeconfig=args.kubeconfig, identity=args.identity,
            context=args.context, wait_for_cluster=False, request_timeout=args.request_timeout,
            metrics=Metrics.create(),  # the one set of collectors this process exports
        )
    except (ConfigError, KubeconfigError, CannotListen) as e:
        log.error("cannot_start", error=str(e))
        return 2
    install_sighup(rx.store)
    gc.freeze()  # start-up objects live forever: keep them out of every later collection
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting_down", grace_seconds=args.shutdown_grace)
    try:
        await rx.stop(args.shutdown_grace)
    except Exception as e:  # a replica adopts whatever was not handed over
        log.error("unclean_shutdown", error=repr(e), hint="unfinished rollbacks will be adopted from their Leases")
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    logs.configure(json={"json": True, "console": False}.get(args.log_format), level=args.log_level)
    return asyncio.run(_serve(args))
