"""POST /slack/events trusts only what Slack signed: bad input is 401 and changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from receiver.domain.slack_actions import Help, MuteAction, SlackRequest
from receiver.http.slack_actions import SlackDispatcher
from receiver.http.slack_events import SlackEvents
from sim.slack import sign
from tests.slack.actions_harness import RecordingActions, actions_config

#: Slack's published example ("Verifying requests from Slack").
EXAMPLE_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
EXAMPLE_TS = "1531420618"
EXAMPLE_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
    "channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
    "response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    "trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
EXAMPLE_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SECRET = "our-own-signing-secret"


class Capture(SlackDispatcher):
    """The real dispatcher's door-facing call, recording what the door handed it."""

    def __init__(self) -> None:
        cfg = actions_config()

        async def none(_: str) -> None:
            return None

        super().__init__(lambda: cfg, None, actions=RecordingActions(), views=None,  # type: ignore[arg-type]
                         find_rollback=none)
        self.accepted: list[object] = []

    def accept(self, parsed: object, via: str) -> None:  # type: ignore[override]
        self.accepted.append(parsed)


async def serve(secret: str, clock: float | None = None) -> tuple[TestServer, Capture]:
    capture = Capture()
    events = SlackEvents(lambda: secret, capture, clock=(lambda: clock) if clock is not None else time.time)
    app = web.Application()
    app.router.add_post("/slack/events", events.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, capture


@pytest.fixture
async def door() -> AsyncIterator[tuple[str, Capture]]:
    server, capture = await serve(SECRET)
    yield str(server.make_url("/slack/events")), capture
    await server.close()


async def post(url: str, body: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as s, s.post(
        url, data=body.encode(), headers={"Content-Type": "application/x-www-form-urlencoded", **headers}
    ) as r:
        return r.status


def signed(body: str, ts: str | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = ts or str(int(time.time()))
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign(secret, ts, body.encode())}


def test_the_fake_slack_signs_as_slacks_published_example() -> None:
    assert sign(EXAMPLE_SECRET, EXAMPLE_TS, EXAMPLE_BODY.encode()) == EXAMPLE_SIGNATURE


async def test_slacks_published_example_is_accepted_and_parsed_then_refused_as_a_replay() -> None:
    server, capture = await serve(EXAMPLE_SECRET, clock=float(EXAMPLE_TS) + 10)
    url = str(server.make_url("/slack/events"))
    headers = {"X-Slack-Request-Timestamp": EXAMPLE_TS, "X-Slack-Signature": EXAMPLE_SIGNATURE}
    try:
        assert await post(url, EXAMPLE_BODY, headers) == 200
        assert await post(url, EXAMPLE_BODY, headers) == 401  # the same request again
    finally:
        await server.close()
    [req] = capture.accepted
    assert isinstance(req, SlackRequest)
    assert (req.user.id, req.user.name, req.channel, req.action) == ("U2CERLKJA", "roadrunner", "G8PSS9T3V", Help())


async def test_a_command_signed_with_our_secret_is_handed_on(door: tuple[str, Capture]) -> None:
    url, capture = door
    body = urlencode({"command": "/rollback", "text": "mute payments 30m deploy", "user_id": "U0ALICE",
                      "channel_id": "C0ROLLBACK", "response_url": "http://127.0.0.1:1/r"})
    assert await post(url, body, signed(body)) == 200
    [req] = capture.accepted
    assert isinstance(req, SlackRequest) and isinstance(req.action, MuteAction)
    assert req.action.target == "payments" and req.action.reason == "deploy"


@pytest.mark.parametrize("case", ["missing signature", "wrong secret", "tampered body", "five minutes old",
                                  "from the future", "garbage timestamp"])
async def test_a_request_slack_did_not_sign_now_is_401_and_handed_nowhere(
    door: tuple[str, Capture], case: str
) -> None:
    url, capture = door
    body = urlencode({"command": "/rollback", "text": "mute payments 2h x", "user_id": "U0ALICE",
                      "channel_id": "C0ROLLBACK"})
    now = int(time.time())
    headers = {
        "missing signature": {},
        "wrong secret": signed(body, secret="not-the-secret"),
        "tampered body": signed(body.replace("payments", "finance")),
        "five minutes old": signed(body, ts=str(now - 301)),
        "from the future": signed(body, ts=str(now + 301)),
        "garbage timestamp": {**signed(body), "X-Slack-Request-Timestamp": "yesterday"},
    }[case]
    assert await post(url, body, headers) == 401
    assert capture.accepted == []


async def test_a_replayed_interaction_is_refused(door: tuple[str, Capture]) -> None:
    url, capture = door
    payload = {"type": "block_actions", "user": {"id": "U0ALICE", "username": "alice"},
               "actions": [{"action_id": "rollback_unmute", "value": json.dumps({"t": "payments"})}],
               "container": {"channel_id": "C0ROLLBACK", "message_ts": "1.000001"}}
    body = urlencode({"payload": json.dumps(payload)})
    headers = signed(body)
    assert await post(url, body, headers) == 200
    assert await post(url, body, headers) == 401
    assert len(capture.accepted) == 1

