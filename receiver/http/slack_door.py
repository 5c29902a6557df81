"""Slack actions, assembled for serve: which door (Socket Mode or POST /slack/events),
the secrets each needs, and the dispatcher both feed.

``slack.actions.transport`` auto (the default) uses Socket Mode when an app-level token
(xapp-) is set, else the HTTP endpoint when a signing secret is set, else Slack actions
are off (messages carry link buttons only). Acting needs the bot (slack.mode: bot) to
answer and to write in threads; a half set-up (a token but mode webhook, socket without
a token, http without a secret) is refused at start, not ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

from receiver.domain.rollback import RollbackRecord
from receiver.domain.settings import Config, ConfigError, SlackActionSettings
from receiver.http.slack_actions import ActionsPort, ClusterViews, RecordViews, SlackDispatcher, ViewsPort
from receiver.http.slack_events import SlackEvents
from receiver.http.slack_socket import start_socket_mode
from receiver.status.views import ClusterObjects

log = structlog.get_logger(__name__)

SOCKET_PROBLEM = "socket_mode"
#: Socket Mode connection retries at start (Slack unreachable): from 1 s up to this.
MAX_RETRY_SECONDS = 30.0


def _read(file: Path | None, env_name: str, env: Mapping[str, str]) -> str:
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"slack.actions: cannot read {file}: {e.strerror}") from e
    return env.get(env_name, "").strip()


@dataclass(frozen=True)
class SlackSecrets:
    transport: str  # "socket", "http" or "off"
    signing_secret: str = field(default="", repr=False)
    app_token: str = field(default="", repr=False)


def slack_secrets(config: Config, env: Mapping[str, str]) -> SlackSecrets:
    """Which door and its secrets; ConfigError for a set-up that cannot work."""
    s: SlackActionSettings = config.slack.actions
    secret = _read(s.signing_secret_file, s.signing_secret_env, env)
    token = _read(s.app_token_file, s.app_token_env, env)
    if token and not token.startswith("xapp-"):
        raise ConfigError(f"slack.actions: the app-level token ({s.app_token_env}) must be an xapp- token")
    transport: str = s.transport
    if transport == "auto":
        transport = "socket" if token else ("http" if secret else "off")
    elif transport == "socket" and not token:
        raise ConfigError(f"slack.actions.transport is socket but no app-level token: set {s.app_token_env}")
    elif transport == "http" and not secret:
        raise ConfigError(f"slack.actions.transport is http but no signing secret: set {s.signing_secret_env}")
    if transport != "off" and config.slack.mode != "bot":
        raise ConfigError(f"Slack actions ({transport}) need slack.mode: bot (the bot answers and writes "
                          f"in threads); it is {config.slack.mode}")
    return SlackSecrets(transport, secret, token)


class SlackDoor:
    """The dispatcher and its doors; ``events`` is mounted at POST /slack/events whenever a
    signing secret is set (also beside Socket Mode), the socket connects in ``start``."""

    def __init__(self, secrets: SlackSecrets, config: Callable[[], Config], web: AsyncWebClient, *,
                 actions: ActionsPort | None, views: ViewsPort | None,
                 find_rollback: Callable[[str], Awaitable[RollbackRecord | None]],
                 acknowledge: Callable[[str, str], bool] | None,
                 set_problem: Callable[[str, str], object] | None = None,
                 clear_problem: Callable[[str], object] | None = None) -> None:
        self.secrets = secrets
        self._set_problem = set_problem
        self._clear_problem = clear_problem
        self.web = web
        self.dispatcher = SlackDispatcher(config, web, actions=actions, views=views, find_rollback=find_rollback,
                                          acknowledge=acknowledge)
        self.events = (SlackEvents(lambda: secrets.signing_secret, self.dispatcher)
                       if secrets.signing_secret else None)
        self.socket: SocketModeClient | None = None
        self.connected = asyncio.Event()
        self.settled = asyncio.Event()  # the first connection attempt is over (connected or refused)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Socket Mode: connect in the background (retried while Slack is unreachable;
        a refused token is logged at error: a person must fix it)."""
        if self.secrets.transport == "socket":
            self._task = asyncio.create_task(self._connect(), name="slack-socket-mode")

    async def _connect(self) -> None:
        delay = 1.0
        while True:
            try:
                self.socket = await start_socket_mode(self.secrets.app_token, self.web, self.dispatcher)
                self.connected.set()
                self.settled.set()
                if self._clear_problem is not None:
                    self._clear_problem(SOCKET_PROBLEM)
                return
            except SlackApiError as e:
                error = str(e.response.get("error"))
                log.error("slack_socket_mode_refused", error=error,
                          fix="check the xapp- app-level token (scope connections:write) and Socket Mode "
                              "being enabled for the app")
                if self._set_problem is not None:  # /health degraded, receiver_slack_up 0: a person must act
                    self._set_problem(SOCKET_PROBLEM, f"Socket Mode refused ({error}): buttons and /rollback "
                                                      "do not work; check the app-level token")
                self.settled.set()
                return
            except Exception as e:
                self.settled.set()
                log.warning("slack_socket_mode_unreachable", error=repr(e), retry_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.socket is not None:
            await self.socket.close()  # type: ignore[no-untyped-call]
        await self.dispatcher.close()


def build_slack_door(secrets: SlackSecrets, config: Callable[[], Config], web: AsyncWebClient | None, *,
                     actions: ActionsPort | None,
                     list_rollbacks: Callable[[], Awaitable[list[RollbackRecord]]],
                     acknowledge: Callable[[str, str], bool] | None,
                     set_problem: Callable[[str, str], object] | None = None,
                     clear_problem: Callable[[str], object] | None = None,
                     read_objects: Callable[[], Awaitable[ClusterObjects]] | None = None) -> SlackDoor | None:
    """None when Slack actions are off (or there is no bot client to answer with)."""
    if secrets.transport == "off" or web is None:
        return None

    async def find(rollback_id: str) -> RollbackRecord | None:
        return next((r for r in await list_rollbacks() if r.id == rollback_id), None)

    views: ViewsPort = ClusterViews(read_objects, config) if read_objects else RecordViews(list_rollbacks, config)
    return SlackDoor(secrets, config, web, actions=actions, views=views,
                     find_rollback=find, acknowledge=acknowledge, set_problem=set_problem,
                     clear_problem=clear_problem)
