"""Socket Mode: the Slack door with no inbound port (slack-sdk's aiohttp SocketModeClient).

apps.connections.open with the xapp- app-level token gives a WebSocket URL; each
envelope (interactive or slash_commands) is acknowledged with its envelope_id at once
and handed to the same dispatcher as POST /slack/events.
"""

from __future__ import annotations

import structlog
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from receiver.domain.slack_actions import parse_command, parse_interaction
from receiver.http.slack_actions import SlackDispatcher

log = structlog.get_logger(__name__)


async def start_socket_mode(app_token: str, web: AsyncWebClient, dispatcher: SlackDispatcher,
                            *, ping_interval: float = 5.0) -> SocketModeClient:
    """Connect (raises slack_sdk's SlackApiError if apps.connections.open refuses the token).

    The token is tried once first: the client's own connect() retries every error for
    ever, so a revoked token would otherwise never be reported."""
    await web.apps_connections_open(app_token=app_token)
    client = SocketModeClient(app_token=app_token, web_client=web, ping_interval=ping_interval)

    async def listener(sm: SocketModeClient, req: SocketModeRequest) -> None:
        await sm.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        if req.type == "interactive":
            dispatcher.accept(parse_interaction(req.payload), "socket")
        elif req.type == "slash_commands":
            dispatcher.accept(parse_command(req.payload), "socket")
        else:
            log.debug("slack_envelope_ignored", type=req.type)

    client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
    await client.connect()  # type: ignore[no-untyped-call]
    log.info("slack_socket_mode_connected")
    return client
