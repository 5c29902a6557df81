"""A fake Slack Web API on loopback: chat.postMessage, chat.update, auth.test, a webhook,
and the reads a restarted bot uses to find its earlier messages (conversations.history,
conversations.replies and conversations.list, with message metadata as Slack keeps it).

It answers with Slack's response shapes and error codes (ok=false with HTTP 200,
invalid_blocks for blocks over Slack's limits, 429 with Retry-After) and keeps the
messages by channel and ts, so a test reads a thread the way a person would. Faults
are scripted per test (``fail_next``) rather than keyed on magic tokens.

``GET /_sim/messages`` is a read-only JSON view of every conversation, for the demo
and for anyone poking at ``receiver sim --slack-port``.

Interactivity, as Slack does it: a person clicking a button or typing ``/rollback …`` is
``POST /_sim/click`` {user, channel, ts, action_id} or ``POST /_sim/command`` {user,
channel, text} (or ``click()`` / ``command()`` from a test). The fake builds Slack's
payload (block_actions with the button's value as it is on that message; a slash
command's form fields) and delivers it to the app: over Socket Mode when the app holds a
connection (apps.connections.open with the xapp- token, a WebSocket with ``hello`` first,
envelopes acknowledged by envelope_id), else signed (v0 HMAC-SHA256 with the signing
secret) to ``request_url``. What the app answers through response_url or
chat.postEphemeral is kept per user (``ephemeral``) and returned to the clicker.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

T = TypeVar("T")

DEFAULT_CHANNELS = {"#rollbacks": "C0ROLLBACK"}
TEAM = {"team": "Fake Workspace", "team_id": "T0FAKE", "user": "rollback-bot", "user_id": "U0BOT",
        "bot_id": "B0BOT"}
WEBHOOK_PATH = "/services/T0FAKE/B0FAKE/fakewebhooksecret"
SIGNING_SECRET = "fake-signing-secret-0123456789abcdef"
APP_TOKEN = "xapp-1-A0FAKE-fake-app-token"
DEFAULT_USERS = {"U0ALICE": "alice", "U0BOB": "bob", "U0CAROL": "carol"}
DEFAULT_GROUPS = {"S0ONCALL": ["U0ALICE"]}
#: Slack waits this long for the app's acknowledgement, then tells the user it failed.
ACK_TIMEOUT = 3.0
#: How long click()/command() wait for the app's first answer (response_url or ephemeral).
ANSWER_TIMEOUT = 5.0

#: Block Kit limits the fake enforces (and so the tests check we stay within).
MAX_BLOCKS, MAX_HEADER, MAX_SECTION, MAX_FIELD, MAX_FIELDS, MAX_CONTEXT, MAX_TEXT = 50, 150, 3000, 2000, 10, 10, 40000


@dataclass
class Msg:
    """A message as stored: current text and blocks, earlier versions, thread replies."""

    channel: str  # channel id
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    reply_broadcast: bool = False
    via: str = "bot"  # or "webhook"
    updates: list[dict[str, Any]] = field(default_factory=list)  # each chat.update: {"text", "blocks"}
    replies: list[Msg] = field(default_factory=list)
    metadata: dict[str, Any] | None = None  # {"event_type", "event_payload"} as posted

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ts": self.ts, "text": self.text, "blocks": self.blocks, "via": self.via}
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.reply_broadcast:
            out["reply_broadcast"] = True
        if self.updates:
            out["updates"] = len(self.updates)
        if self.replies:
            out["replies"] = [r.to_json() for r in self.replies]
        return out


@dataclass
class Ephemeral:
    """A message only one user sees: chat.postEphemeral or a response_url answer."""

    user: str
    channel: str
    text: str
    blocks: list[dict[str, Any]]
    via: str  # "chat.postEphemeral" or "response_url"
    request: int | None = None  # the click/command it answers (response_url only)
    ts: str = ""  # a click on its buttons names it by this


@dataclass
class Delivery:
    """What happened to one interaction: how it went to the app, whether it was
    acknowledged in time, and what the app answered the user."""

    via: str  # "socket", "http" or "none"
    acked: bool
    status: int | None = None  # HTTP mode: the app's status code
    body: str = ""  # the app's immediate answer (HTTP body or the ack's payload)
    answers: list[Ephemeral] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"via": self.via, "acked": self.acked, "status": self.status, "body": self.body,
                "error": self.error,
                "answers": [{"text": a.text, "blocks": a.blocks, "via": a.via, "ts": a.ts}
                            for a in self.answers]}


@dataclass
class Request:
    """One call as received: the API method, its body, and what the fake answered."""

    method: str
    body: dict[str, Any]
    authorization: str | None
    at: float
    outcome: str = ""


@dataclass
class Fault:
    method: str
    status: int | None = None
    retry_after: int | None = None
    error: str | None = None
    hang: bool = False
    times: int = 1


class FakeSlack:
    """The fake server. ``channels`` maps names to ids; an unknown channel is channel_not_found."""

    def __init__(
        self,
        token: str = "xoxb-test-token",
        channels: dict[str, str] | None = None,
        *,
        auto_create_channels: bool = False,
        signing_secret: str = SIGNING_SECRET,
        app_token: str = APP_TOKEN,
        request_url: str | None = None,
        users: dict[str, str] | None = None,
        groups: dict[str, list[str]] | None = None,
    ) -> None:
        self.token = token
        self.signing_secret = signing_secret
        self.app_token = app_token
        #: Where HTTP-mode interactions go (the app's POST /slack/events), when no socket is open.
        self.request_url = request_url
        self.users = dict(users if users is not None else DEFAULT_USERS)
        self.groups = {k: list(v) for k, v in (groups if groups is not None else DEFAULT_GROUPS).items()}
        self.ephemeral: list[Ephemeral] = []
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._responders: dict[int, tuple[str, str]] = {}  # response_url id -> (user, channel)
        self._interactions = itertools.count(1)
        self._client: aiohttp.ClientSession | None = None
        self.channels: dict[str, str] = dict(channels if channels is not None else DEFAULT_CHANNELS)
        self.auto_create_channels = auto_create_channels
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self._history: dict[str, list[Msg]] = {cid: [] for cid in self.channels.values()}
        self._by_ts: dict[tuple[str, str], Msg] = {}
        self._seq = itertools.count(1)
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._host = "127.0.0.1"
        self.url = ""

    # --- lifecycle -----------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve; returns the base URL. Started again after stop(), it reuses its old port."""
        if self._runner is not None:
            return self.url
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post(WEBHOOK_PATH, self._webhook)
        app.router.add_get("/_sim/messages", self._view)
        app.router.add_post("/_sim/click", self._click_route)
        app.router.add_post("/_sim/command", self._command_route)
        app.router.add_post("/_sim/respond/{n}", self._respond)
        app.router.add_get("/_sim/socket", self._socket)
        app.router.add_get("/_sim/ephemeral", self._ephemeral_view)
        app.router.add_post("/_sim/request_url", self._set_request_url)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port or self._port, reuse_address=True)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self._host, self._port = host, sock.getsockname()[1]
        self._runner = runner
        self.url = f"http://{host}:{self._port}"
        return self.url

    async def stop(self) -> None:
        """Stop serving (connections are then refused); hanging calls are released first."""
        self._stopping.set()
        for ws in list(self._sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    @property
    def webhook_url(self) -> str:
        """An incoming-webhook URL posting to the first configured channel."""
        return f"{self.url}{WEBHOOK_PATH}"

    # --- test controls -------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int | None = None,
        retry_after: int | None = None,
        error: str | None = None,
        hang: bool = False,
        times: int = 1,
    ) -> None:
        """Script the next ``times`` calls of ``method`` ("*" = any; "webhook" = the webhook).

        status=429 answers ratelimited with Retry-After (default 1); status=500/503 a
        server error; error="invalid_auth" (or any code) ok=false with HTTP 200; hang=True
        handles the call (the message lands) and then never answers, like a response lost
        on the way back.
        """
        if status is None and error is None and not hang:
            raise ValueError("fail_next needs status, error or hang")
        if status == 429 and retry_after is None:
            retry_after = 1
        self.faults.append(Fault(method, status, retry_after, error, hang, times))

    def channel_id(self, channel: str) -> str | None:
        if channel in self._history:
            return channel
        name = channel if channel.startswith("#") else f"#{channel}"
        cid = self.channels.get(name)
        if cid is None and self.auto_create_channels and not channel.startswith(("C", "G", "D")):
            cid = f"C{len(self.channels) + 1:08d}"
            self.channels[name] = cid
            self._history[cid] = []
        return cid

    def messages(self, channel: str) -> list[Msg]:
        """Top-level messages in order (broadcast thread replies included, as Slack shows them)."""
        cid = self.channel_id(channel)
        return list(self._history.get(cid, [])) if cid else []

    def thread(self, channel: str, ts: str) -> list[Msg]:
        """The replies under a parent, in order."""
        cid = self.channel_id(channel)
        msg = self._by_ts.get((cid or "", ts))
        return list(msg.replies) if msg else []

    def calls(self, method: str) -> list[Request]:
        return [r for r in self.requests if r.method == method]

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5) -> T:  # noqa: ASYNC109
        """Wait until ``predicate()`` is truthy, re-checking on every change; returns its value."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    result = predicate()
                    if result:
                        return result
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(f"fake Slack: condition not met within {timeout} s; now:\n{self.dump()}") from None

    def dump(self) -> str:
        return json.dumps(self.view(), indent=1)[:4000]

    def view(self) -> dict[str, Any]:
        names = {cid: name for name, cid in self.channels.items()}
        return {
            "channels": {
                names.get(cid, cid): {"id": cid, "messages": [m.to_json() for m in msgs]}
                for cid, msgs in self._history.items()
            }
        }

    # --- interactivity: clicks, slash commands, Socket Mode, ephemeral answers ------------

    async def click(self, user: str, channel: str, ts: str, action_id: str) -> Delivery:
        """A person clicks ``action_id`` on message ``ts`` (a confirm dialog counts as confirmed);
        ``ts`` may also name an ephemeral message that person was shown."""
        cid = self.channel_id(channel)
        msg = self._by_ts.get((cid or "", ts))
        ephemeral = msg is None
        if msg is None:
            seen = next((e for e in self.ephemeral if e.ts == ts and e.user == user and e.channel == cid), None)
            if seen is None:
                return Delivery("none", False, error="message_not_found")
            msg = Msg(seen.channel, ts, seen.text, seen.blocks, via="ephemeral")
        found = _find_button(msg, action_id)
        if found is None:
            return Delivery("none", False, error="no such button on that message")
        block_id, button = found
        n = next(self._interactions)
        shown = self._shown(msg, False)
        payload: dict[str, Any] = {
            "type": "block_actions", "api_app_id": "A0FAKE", "token": "fake-verification-token",
            "team": {"id": TEAM["team_id"], "domain": "fake"},
            "user": {"id": user, "username": self.users.get(user, user), "name": self.users.get(user, user),
                     "team_id": TEAM["team_id"]},
            "container": {"type": "message", "message_ts": ts, "channel_id": msg.channel,
                          "is_ephemeral": ephemeral},
            "channel": {"id": msg.channel, "name": self._name(msg.channel)},
            "trigger_id": f"{n}.{int(time.time())}.fake",
            "response_url": f"{self.url}/_sim/respond/{n}",
            "actions": [{"type": "button", "action_id": action_id, "block_id": block_id,
                         "text": button.get("text"), "value": button.get("value", ""),
                         "action_ts": f"{time.time():.6f}"}],
        }
        if not ephemeral:  # Slack sends no message for a click on an ephemeral one
            payload["message"] = shown
        if "url" in button:
            payload["actions"][0]["url"] = button["url"]
        self._responders[n] = (user, msg.channel)
        start = len(self.ephemeral)
        delivery = await self._deliver("interactive", payload, form={"payload": json.dumps(payload)})
        if delivery.acked and "url" not in button:
            delivery.answers = await self._answers(user, n, start)
        return delivery

    async def command(self, user: str, channel: str, text: str, command: str = "/rollback") -> Delivery:
        """A person types ``{command} {text}`` in ``channel``."""
        cid = self.channel_id(channel)
        if cid is None:
            return Delivery("none", False, error="channel_not_found")
        n = next(self._interactions)
        form = {"token": "fake-verification-token", "team_id": TEAM["team_id"], "team_domain": "fake",
                "channel_id": cid, "channel_name": self._name(cid).removeprefix("#"), "user_id": user,
                "user_name": self.users.get(user, user), "command": command, "text": text, "api_app_id": "A0FAKE",
                "response_url": f"{self.url}/_sim/respond/{n}", "trigger_id": f"{n}.{int(time.time())}.fake"}
        self._responders[n] = (user, cid)
        start = len(self.ephemeral)
        delivery = await self._deliver("slash_commands", form, form=form)
        if delivery.acked:
            if delivery.body.strip().startswith("{"):  # an immediate answer in the ack
                with contextlib.suppress(ValueError):
                    data = json.loads(delivery.body)
                    if isinstance(data, dict) and (data.get("text") or data.get("blocks")):
                        delivery.answers = [Ephemeral(user, cid, str(data.get("text") or ""),
                                                      list(data.get("blocks") or []), "ack", n)]
                        return delivery
            delivery.answers = await self._answers(user, n, start)
        return delivery

    async def _answers(self, user: str, n: int, start: int) -> list[Ephemeral]:
        """The app's answers to interaction ``n`` (waits for the first, up to ANSWER_TIMEOUT);
        ``start``: how many ephemeral messages there were before it was delivered."""

        def mine() -> list[Ephemeral]:
            return [e for e in self.ephemeral[start:] if e.request == n or (e.request is None and e.user == user)]

        with contextlib.suppress(TimeoutError):
            await self.wait_for(mine, ANSWER_TIMEOUT)
        return mine()

    async def _deliver(self, kind: str, payload: dict[str, Any], *, form: dict[str, str]) -> Delivery:
        """To the app: over an open Socket Mode connection, else signed to request_url."""
        req = Request(f"deliver:{kind}", payload, None, time.time())
        self.requests.append(req)
        delivery = await self._deliver_once(kind, payload, form=form)
        req.outcome = "acked" if delivery.acked else (delivery.error or "not acked")
        self._notify()
        return delivery

    async def _deliver_once(self, kind: str, payload: dict[str, Any], *, form: dict[str, str]) -> Delivery:
        if self._sockets:
            ws = self._sockets[-1]
            envelope_id = f"env-{next(self._seq)}"
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._acks[envelope_id] = fut
            await ws.send_json({"envelope_id": envelope_id, "type": kind, "payload": payload,
                                "accepts_response_payload": kind != "interactive", "retry_attempt": 0,
                                "retry_reason": ""})
            try:
                ack = await asyncio.wait_for(fut, ACK_TIMEOUT)
            except TimeoutError:
                return Delivery("socket", False, error="not acknowledged within 3 s")
            finally:
                self._acks.pop(envelope_id, None)
            body = json.dumps(ack["payload"]) if isinstance(ack.get("payload"), dict) else ""
            return Delivery("socket", True, body=body)
        if not self.request_url:
            return Delivery("none", False, error="no Socket Mode connection and no request URL")
        raw = urlencode(form).encode()
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
                   "X-Slack-Signature": sign(self.signing_secret, ts, raw)}
        if self._client is None:
            self._client = aiohttp.ClientSession()
        try:
            async with self._client.post(self.request_url, data=raw, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=ACK_TIMEOUT)) as resp:
                text = await resp.text()
                return Delivery("http", resp.status == 200, status=resp.status, body=text,
                                error=None if resp.status == 200 else f"HTTP {resp.status}")
        except (TimeoutError, aiohttp.ClientError) as e:
            return Delivery("http", False, error=f"request URL failed: {e!r}")

    def _post_ephemeral(self, body: dict[str, Any]) -> dict[str, Any]:
        cid = self.channel_id(str(body.get("channel") or ""))
        if cid is None:
            return {"ok": False, "error": "channel_not_found"}
        user = str(body.get("user") or "")
        if user not in self.users:
            return {"ok": False, "error": "user_not_in_channel"}
        text, blocks, err = self._content(body)
        if err:
            return err
        ts = self._new_ts()
        self.ephemeral.append(Ephemeral(user, cid, text, blocks, "chat.postEphemeral", ts=ts))
        self._notify()
        return {"ok": True, "message_ts": ts}

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        """A response_url: an ephemeral answer to the user (or in_channel: a channel message)."""
        n = int(request.match_info["n"]) if request.match_info["n"].isdigit() else -1
        if n not in self._responders:
            return web.Response(status=404, text="expired_url")
        user, cid = self._responders[n]
        body = await self._body(request)
        self.requests.append(Request("response_url", body, None, time.time()))
        text, blocks, err = self._content(body)
        if err:
            return web.Response(status=400, text=str(err.get("error")))
        if body.get("response_type") == "in_channel":
            msg = Msg(cid, self._new_ts(), text, blocks, via="response_url")
            self._history[cid].append(msg)
            self._by_ts[(cid, msg.ts)] = msg
        else:
            self.ephemeral.append(Ephemeral(user, cid, text, blocks, "response_url", n, ts=self._new_ts()))
        self._notify()
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        """The Socket Mode WebSocket: hello first, then envelopes; acks resolve deliveries."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        self._notify()
        try:
            await ws.send_json({"type": "hello", "num_connections": len(self._sockets),
                                "debug_info": {"host": "fake-slack"}, "connection_info": {"app_id": "A0FAKE"}})
            async for m in ws:
                if m.type != aiohttp.WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError):
                    data = json.loads(m.data)
                    fut = self._acks.get(str(data.get("envelope_id"))) if isinstance(data, dict) else None
                    if fut is not None and not fut.done():
                        fut.set_result(data)
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
            self._notify()
        return ws

    def _name(self, cid: str) -> str:
        return next((n for n, i in self.channels.items() if i == cid), cid)

    def ephemeral_for(self, user: str) -> list[Ephemeral]:
        """What ``user`` was told privately, oldest first."""
        return [e for e in self.ephemeral if e.user == user]

    def socket_connected(self) -> bool:
        return bool(self._sockets)

    async def _click_route(self, request: web.Request) -> web.StreamResponse:
        data = await self._body(request)
        missing = [k for k in ("user", "channel", "ts", "action_id") if not data.get(k)]
        if missing:
            return web.json_response({"error": f"missing {', '.join(missing)}"}, status=400)
        d = await self.click(str(data["user"]), str(data["channel"]), str(data["ts"]), str(data["action_id"]))
        return web.json_response(d.to_json(), status=404 if d.via == "none" and "message" in (d.error or "")
                                 else 200)

    async def _command_route(self, request: web.Request) -> web.StreamResponse:
        data = await self._body(request)
        if not data.get("user") or not data.get("channel"):
            return web.json_response({"error": "missing user or channel"}, status=400)
        d = await self.command(str(data["user"]), str(data["channel"]), str(data.get("text") or ""))
        return web.json_response(d.to_json())

    async def _set_request_url(self, request: web.Request) -> web.StreamResponse:
        """Where HTTP-mode interactions go, e.g. {"url": "http://127.0.0.1:8080/slack/events"}."""
        data = await self._body(request)
        url = str(data.get("url") or "")
        if not url.startswith(("http://", "https://")):
            return web.json_response({"error": "url must be http(s)"}, status=400)
        self.request_url = url
        return web.json_response({"request_url": url})

    async def _ephemeral_view(self, request: web.Request) -> web.StreamResponse:
        user = request.query.get("user")
        shown = [e for e in self.ephemeral if user is None or e.user == user]
        return web.json_response([{"user": e.user, "channel": e.channel, "text": e.text, "via": e.via} for e in shown])

    # --- internals -----------------------------------------------------------------

    def _notify(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    def _take_fault(self, method: str) -> Fault | None:
        for f in self.faults:
            if f.method in (method, "*"):
                f.times -= 1
                if f.times <= 0:
                    self.faults.remove(f)
                return f
        return None

    def _new_ts(self) -> str:
        return f"{int(time.time())}.{next(self._seq):06d}"

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw:
            return dict(request.query)
        if request.content_type == "application/json":
            try:
                data = json.loads(raw)
            except ValueError:
                return {"__invalid_json__": True}
            return data if isinstance(data, dict) else {"__invalid_json__": True}
        return dict(parse_qsl(raw.decode("utf-8", "replace")))

    async def _hang(self) -> None:
        await self._stopping.wait()

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        body = await self._body(request)
        req = Request(method, body, request.headers.get("Authorization"), time.time())
        self.requests.append(req)
        self._notify()
        fault = self._take_fault(method)
        if fault is not None and not fault.hang:
            if fault.status == 429:
                req.outcome = "429"
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                         headers={"Retry-After": str(fault.retry_after)})
            if fault.status is not None and fault.status >= 400:
                req.outcome = str(fault.status)
                return web.Response(status=fault.status, text="Internal Server Error")
            if fault.error:
                req.outcome = fault.error
                return web.json_response({"ok": False, "error": fault.error})
        answer = self._answer(method, body, req.authorization)
        req.outcome = "ok" if answer.get("ok") else str(answer.get("error"))
        self._notify()
        if fault is not None and fault.hang:
            req.outcome += " (hung)"
            await self._hang()
        return web.json_response(answer)

    def _answer(self, method: str, body: dict[str, Any], authorization: str | None) -> dict[str, Any]:
        token = body.get("token") or (authorization or "").removeprefix("Bearer ").strip()
        if not token:
            return {"ok": False, "error": "not_authed"}
        if method == "apps.connections.open":  # the one method taking the app-level token
            if token != self.app_token:
                error = "not_allowed_token_type" if token.startswith("xoxb-") else "invalid_auth"
                return {"ok": False, "error": error}
            return {"ok": True, "url": f"ws://{self._host}:{self._port}/_sim/socket?ticket={next(self._seq)}"}
        if token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        if body.get("__invalid_json__"):
            return {"ok": False, "error": "invalid_json"}
        if method == "auth.test":
            return {"ok": True, "url": f"{self.url}/", **TEAM}
        if method in ("conversations.info", "conversations.list"):
            return self._conversations(method, body)
        if method == "chat.postMessage":
            return self._post(body)
        if method == "chat.update":
            return self._update(body)
        if method in ("conversations.history", "conversations.replies"):
            return self._read(method, body)
        if method == "chat.postEphemeral":
            return self._post_ephemeral(body)
        if method == "usergroups.users.list":
            group = str(body.get("usergroup") or "")
            if group not in self.groups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": list(self.groups[group])}
        return {"ok": False, "error": "unknown_method"}

    # conversations.info / conversations.list: channel lookup, as `check-config --cluster` does it
    def _channel_object(self, name: str, cid: str) -> dict[str, Any]:
        bare = name.removeprefix("#")
        return {"id": cid, "name": bare, "name_normalized": bare, "is_channel": True, "is_group": False,
                "is_im": False, "is_mpim": False, "is_private": False, "is_archived": False,
                "is_general": False, "is_member": True, "created": 1700000000, "creator": TEAM["user_id"]}

    def _conversations(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """Public channels only, the bot a member of each; info takes an id (a name is
        channel_not_found, as in Slack); list pages with an opaque cursor and honours types."""
        known = sorted(self.channels.items(), key=lambda kv: kv[1])
        if method == "conversations.info":
            cid = str(body.get("channel") or "")
            found = next((n for n, i in known if i == cid), None)
            if found is None:
                return {"ok": False, "error": "channel_not_found"}
            return {"ok": True, "channel": self._channel_object(found, cid)}
        types = str(body.get("types") or "public_channel").split(",")
        if "public_channel" not in types:
            known = []
        try:
            limit = max(1, min(int(body.get("limit") or 100), 1000))
            cursor = str(body.get("cursor") or "")
            start = int(base64.b64decode(cursor).decode().removeprefix("offset:")) if cursor else 0
        except ValueError:
            return {"ok": False, "error": "invalid_cursor"}
        page = known[start : start + limit]
        after = start + limit
        next_cursor = base64.b64encode(f"offset:{after}".encode()).decode() if after < len(known) else ""
        return {"ok": True, "channels": [self._channel_object(n, i) for n, i in page],
                "response_metadata": {"next_cursor": next_cursor}}

    def _content(self, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], dict[str, Any] | None]:
        text = str(body.get("text") or "")
        blocks = body.get("blocks") or []
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                return text, [], {"ok": False, "error": "invalid_blocks_format"}
        if not isinstance(blocks, list):
            return text, [], {"ok": False, "error": "invalid_blocks_format"}
        if not text and not blocks:
            return text, blocks, {"ok": False, "error": "no_text"}
        if len(text) > MAX_TEXT:
            return text, blocks, {"ok": False, "error": "msg_too_long"}
        problems = block_problems(blocks)
        if problems:
            return text, blocks, {"ok": False, "error": "invalid_blocks", "errors": problems}
        return text, blocks, None

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        cid = self.channel_id(str(body.get("channel") or ""))
        if cid is None:
            return {"ok": False, "error": "channel_not_found"}
        text, blocks, err = self._content(body)
        if err:
            return err
        thread_ts = body.get("thread_ts")
        broadcast = str(body.get("reply_broadcast", "")).lower() in ("true", "1")
        msg = Msg(cid, self._new_ts(), text, blocks, thread_ts=str(thread_ts) if thread_ts else None,
                  reply_broadcast=bool(thread_ts) and broadcast, metadata=_metadata(body.get("metadata")))
        if thread_ts:
            parent = self._by_ts.get((cid, str(thread_ts)))
            if parent is None or parent.thread_ts is not None:
                return {"ok": False, "error": "thread_not_found"}
            parent.replies.append(msg)
            if msg.reply_broadcast:
                self._history[cid].append(msg)
        else:
            self._history[cid].append(msg)
        self._by_ts[(cid, msg.ts)] = msg
        shown: dict[str, Any] = {"type": "message", "subtype": "bot_message", "text": text, "ts": msg.ts,
                                 "bot_id": TEAM["bot_id"], "blocks": blocks}
        if thread_ts:
            shown["thread_ts"] = str(thread_ts)
        return {"ok": True, "channel": cid, "ts": msg.ts, "message": shown}

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        cid = str(body.get("channel") or "")
        if cid not in self._history:
            return {"ok": False, "error": "channel_not_found"}  # chat.update needs the id
        msg = self._by_ts.get((cid, str(body.get("ts") or "")))
        if msg is None:
            return {"ok": False, "error": "message_not_found"}
        text, blocks, err = self._content(body)
        if err:
            return err
        msg.updates.append({"text": text, "blocks": blocks})
        if body.get("metadata"):
            msg.metadata = _metadata(body["metadata"]) or msg.metadata
        msg.text = text or msg.text
        if "blocks" in body:
            msg.blocks = blocks
        return {"ok": True, "channel": cid, "ts": msg.ts, "text": msg.text,
                "message": {"text": msg.text, "blocks": msg.blocks}}

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        req = Request("webhook", body, None, time.time())
        self.requests.append(req)
        self._notify()
        fault = self._take_fault("webhook")
        if fault is not None and not fault.hang:
            req.outcome = fault.error or str(fault.status)
            headers = {"Retry-After": str(fault.retry_after)} if fault.status == 429 else None
            return web.Response(status=fault.status or 400, text=fault.error or "error", headers=headers)
        cid = next(iter(self._history), None)
        if cid is None:
            return web.Response(status=404, text="channel_not_found")
        text, blocks, err = self._content(body)
        if err:
            req.outcome = "invalid_payload"
            return web.Response(status=400, text="no_text" if err["error"] == "no_text" else "invalid_payload")
        msg = Msg(cid, self._new_ts(), text, blocks, via="webhook")
        self._history[cid].append(msg)
        self._by_ts[(cid, msg.ts)] = msg
        req.outcome = "ok"
        self._notify()
        if fault is not None and fault.hang:
            await self._hang()
        return web.Response(text="ok")

    async def _view(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.view())

    # --- reads (conversations.*), as Slack answers them --------------------------------

    def _read(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """conversations.history (newest first) and .replies (parent first); cursor paging.

        Like Slack they take channel ids only (a "#name" is channel_not_found), and return
        a message's metadata only with include_all_metadata."""
        try:
            limit = max(1, min(int(body.get("limit") or 100), 1000))
            start = int(str(body.get("cursor") or "0").removeprefix("next:"))
        except ValueError:
            return {"ok": False, "error": "invalid_cursor"}
        cid = str(body.get("channel") or "")
        if cid not in self._history:
            return {"ok": False, "error": "channel_not_found"}
        with_metadata = str(body.get("include_all_metadata", "")).lower() in ("true", "1")
        if method == "conversations.history":
            oldest, latest = float(body.get("oldest") or 0), float(body.get("latest") or "inf")
            found = [m for m in reversed(self._history[cid]) if oldest < float(m.ts) < latest]
        else:
            parent = self._by_ts.get((cid, str(body.get("ts") or "")))
            if parent is None:
                return {"ok": False, "error": "thread_not_found"}
            if parent.thread_ts:  # a reply's ts gives its whole thread, as in Slack
                parent = self._by_ts[(cid, parent.thread_ts)]
            found = [parent, *parent.replies]
        items = [self._shown(m, with_metadata) for m in found]
        page, rest = items[start:start + limit], items[start + limit:]
        return {"ok": True, "messages": page, "has_more": bool(rest),
                "response_metadata": {"next_cursor": f"next:{start + limit}" if rest else ""}}

    @staticmethod
    def _shown(m: Msg, with_metadata: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "text": m.text, "ts": m.ts, "blocks": m.blocks}
        if m.via == "bot":
            out.update(subtype="bot_message", bot_id=TEAM["bot_id"])
        if m.thread_ts:
            out["thread_ts"] = m.thread_ts
        elif m.replies:
            out.update(thread_ts=m.ts, reply_count=len(m.replies), latest_reply=m.replies[-1].ts)
        if with_metadata and m.metadata is not None:
            out["metadata"] = m.metadata
        return out


def _metadata(raw: Any) -> dict[str, Any] | None:
    """Slack keeps {event_type, event_payload}; a JSON string (form bodies) is parsed."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, dict) or not isinstance(raw.get("event_type"), str):
        return None
    payload = raw.get("event_payload")
    return {"event_type": raw["event_type"], "event_payload": payload if isinstance(payload, dict) else {}}


MAX_ACTIONS, MAX_BUTTON_TEXT, MAX_URL, MAX_VALUE, MAX_ACTION_ID = 25, 75, 3000, 2000, 255


def _actions_problems(b: dict[str, Any], where: str) -> list[str]:
    """An actions block: 1 to 25 elements; buttons within Slack's text, url, value and id limits."""
    els = b.get("elements") or []
    problems = []
    if not els or len(els) > MAX_ACTIONS:
        problems.append(f"must provide 1 to {MAX_ACTIONS} items {where}/elements")
    ids = [e.get("action_id") for e in els if isinstance(e, dict) and e.get("action_id")]
    if len(ids) != len(set(ids)):
        problems.append(f"action_id values must be unique {where}/elements")
    for j, e in enumerate(els):
        at = f"{where}/elements/{j}"
        if not isinstance(e, dict) or e.get("type") != "button":
            continue
        raw_text = e.get("text")
        text: dict[str, Any] = raw_text if isinstance(raw_text, dict) else {}
        if text.get("type") != "plain_text" or not 0 < len(str(text.get("text", ""))) <= MAX_BUTTON_TEXT:
            problems.append(f"button text must be plain_text of 1 to {MAX_BUTTON_TEXT} characters {at}/text")
        if len(str(e.get("url", ""))) > MAX_URL or len(str(e.get("value", ""))) > MAX_VALUE:
            problems.append(f"button url or value too long {at}")
        if len(str(e.get("action_id", ""))) > MAX_ACTION_ID:
            problems.append(f"action_id too long {at}")
        confirm = e.get("confirm")
        if confirm is not None and not (isinstance(confirm, dict) and all(
                isinstance(confirm.get(k), dict) for k in ("title", "text", "confirm", "deny"))):
            problems.append(f"confirm needs title, text, confirm and deny {at}/confirm")
    return problems


def block_problems(blocks: list[Any]) -> list[str]:
    """What Slack would reject in these blocks (the limits of the Block Kit reference)."""
    problems: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"must provide no more than {MAX_BLOCKS} blocks [json-pointer:/blocks]")
    for i, b in enumerate(blocks):
        where = f"[json-pointer:/blocks/{i}]"
        if not isinstance(b, dict) or "type" not in b:
            problems.append(f"missing required field: type {where}")
            continue
        kind = b["type"]
        raw = b.get("text")
        text: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if kind == "header":
            if text.get("type") != "plain_text":
                problems.append(f"header text must be plain_text {where}")
            if len(str(text.get("text", ""))) > MAX_HEADER:
                problems.append(f"must be less than {MAX_HEADER + 1} characters {where}/text")
        elif kind == "section":
            if not text and not b.get("fields"):
                problems.append(f"section needs text or fields {where}")
            if len(str(text.get("text", ""))) > MAX_SECTION:
                problems.append(f"must be less than {MAX_SECTION + 1} characters {where}/text")
            flds = b.get("fields") or []
            if len(flds) > MAX_FIELDS:
                problems.append(f"must provide no more than {MAX_FIELDS} items {where}/fields")
            for j, f in enumerate(flds):
                if len(str(f.get("text", ""))) > MAX_FIELD:
                    problems.append(f"must be less than {MAX_FIELD + 1} characters {where}/fields/{j}")
        elif kind == "context":
            els = b.get("elements") or []
            if not els:
                problems.append(f"must provide at least 1 item {where}/elements")
            if len(els) > MAX_CONTEXT:
                problems.append(f"must provide no more than {MAX_CONTEXT} items {where}/elements")
        elif kind == "actions":
            problems += _actions_problems(b, where)
        elif kind not in ("divider", "image", "rich_text", "input", "file", "video"):
            problems.append(f"unknown block type {kind} {where}")
    return problems


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature: v0= + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def _find_button(msg: Msg, action_id: str) -> tuple[str, dict[str, Any]] | None:
    for block in msg.blocks:
        if block.get("type") != "actions":
            continue
        for el in block.get("elements") or []:
            if isinstance(el, dict) and el.get("action_id") == action_id:
                return str(block.get("block_id") or ""), el
    return None
