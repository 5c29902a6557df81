"""A Slack actions set-up for tests: the bot notifier, the dispatcher and both doors, all
real (slack-sdk against the fake Slack over HTTP and WebSocket).

The Actions door itself (receiver/actions, the CLI's code path) is stood in for by
``RecordingActions``, which only records what it was asked: these tests are about the
Slack side (who may act, what reaches the door, what people are told).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_sdk.socket_mode.aiohttp import SocketModeClient

from receiver.domain.rollback import RollbackRecord
from receiver.domain.settings import Config, SlackActionSettings, SlackAllow
from receiver.http.slack_actions import RecordViews, SlackDispatcher
from receiver.http.slack_events import SlackEvents
from receiver.http.slack_socket import start_socket_mode
from receiver.notify.bot import SlackBotNotifier
from sim.slack import FakeSlack
from tests.fixtures.slack import BotFactory, slack_config

NOW = datetime(2026, 11, 27, 3, 30, tzinfo=UTC)
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"  # alice is on call (group S0ONCALL)


def actions_config(**allow: list[str]) -> Config:
    """finance-service and payments; by default alice may mute and roll back, the on-call
    group may acknowledge, bob may do nothing."""
    lists = {"mute": [ALICE], "rollback": [ALICE], "ack": ["S0ONCALL"], **allow}
    return slack_config(actions=SlackActionSettings(allow=SlackAllow(**lists)))


@dataclass
class RecordingActions:
    """Stands in for the Actions door: records each call (name, target, keywords)."""

    calls: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    refuse: str | None = None  # raise ValueError(refuse), as the door does for a refused action
    hold: asyncio.Event | None = None  # when set: each call waits for it (a slow cluster)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    result: object = None  # what each call returns (the door's Done, or a RollbackRecord)

    async def _record(self, name: str, target: str | None, **kw: Any) -> Any:
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.refuse:
            raise ValueError(self.refuse)
        self.calls.append((name, target, kw))
        return self.result

    async def mute(self, target: str | None, *, until: datetime, reason: str, actor: Any) -> Any:
        return await self._record("mute", target, until=until, reason=reason, actor=actor)

    async def unmute(self, target: str | None, *, actor: Any) -> Any:
        return await self._record("unmute", target, actor=actor)

    async def close_breaker(self, *, actor: Any) -> Any:
        return await self._record("close_breaker", None, actor=actor)

    async def rollback(self, target: str, *, actor: Any, dry_run: bool = False) -> Any:
        return await self._record("rollback", target, actor=actor, dry_run=dry_run)


@dataclass
class Door:
    fake: FakeSlack
    bot: SlackBotNotifier
    dispatcher: SlackDispatcher
    actions: RecordingActions
    records: dict[str, RollbackRecord]
    url: str  # the HTTP door, POST /slack/events
    socket: SocketModeClient | None = None

    async def play(self, calls: list[tuple[RollbackRecord, Any]]) -> RollbackRecord:
        """Tell the bot a rollback (posting its parent with buttons); returns its last record."""
        for rec, step in calls:
            self.bot.rollback_changed(rec, step)
            await self.bot.drained()
        last = calls[-1][0]
        self.records[last.id] = last
        return last


DoorFactory = Callable[..., Awaitable[Door]]


@pytest.fixture
async def slack_door(fake_slack: FakeSlack, slack_bot: BotFactory) -> AsyncIterator[DoorFactory]:
    """``await slack_door(socket=True, config=...)``: Socket Mode, else HTTP to POST /slack/events."""
    servers: list[TestServer] = []
    sockets: list[SocketModeClient] = []
    dispatchers: list[SlackDispatcher] = []

    async def make(*, socket: bool = False, config: Config | None = None) -> Door:
        cfg = config or actions_config()
        bot = await slack_bot(config=cfg)
        bot.actions_enabled = True
        records: dict[str, RollbackRecord] = {}
        actions = RecordingActions()

        async def find(rollback_id: str) -> RollbackRecord | None:
            return records.get(rollback_id)

        async def listed() -> list[RollbackRecord]:
            return list(records.values())

        dispatcher = SlackDispatcher(lambda: cfg, bot.client, actions=actions, views=RecordViews(listed, lambda: cfg),
                                     find_rollback=find, acknowledge=bot.acknowledge, clock=lambda: NOW)
        dispatchers.append(dispatcher)
        app = web.Application()
        app.router.add_post("/slack/events", SlackEvents(lambda: fake_slack.signing_secret, dispatcher).handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        url = str(server.make_url("/slack/events"))
        door = Door(fake_slack, bot, dispatcher, actions, records, url)
        if socket:
            door.socket = await start_socket_mode(fake_slack.app_token, bot.client, dispatcher, ping_interval=1)
            sockets.append(door.socket)
            await fake_slack.wait_for(fake_slack.socket_connected)
        else:
            fake_slack.request_url = url
        return door

    yield make
    for d in dispatchers:
        await d.close(1.0)
    for s in sockets:
        await s.close()  # type: ignore[no-untyped-call]
    for srv in servers:
        await srv.close()
