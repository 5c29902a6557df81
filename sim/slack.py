"""A fake Slack Web API on loopback: chat.postMessage, chat.update, auth.test, a webhook,
and the reads a restarted bot uses to find its earlier messages (conversations.history,
conversations.replies and conversations.list, with message metadata as Slack keeps it).

It answers with Slack's response shapes and error codes (ok=false with HTTP 200,
invalid_blocks for blocks over Slack's limits, 429 with Retry-After) and keeps the
messages by channel and ts, so a test reads a thread the way a person would. Faults
are scripted per test (``fail_next``) rather than keyed on magic tokens.

``GET /_sim/messages`` is a read-only JSON view of every conversation, for the demo
and for anyone poking at ``receiver sim --slack-port``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web

T = TypeVar("T")

DEFAULT_CHANNELS = {"#rollbacks": "C0ROLLBACK"}
TEAM = {"team": "Fake Workspace", "team_id": "T0FAKE", "user": "rollback-bot", "user_id": "U0BOT",
        "bot_id": "B0BOT"}
WEBHOOK_PATH = "/services/T0FAKE/B0FAKE/fakewebhooksecret"

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
    ) -> None:
        self.token = token
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
        elif kind not in ("divider", "actions", "image", "rich_text", "input", "file", "video"):
            problems.append(f"unknown block type {kind} {where}")
    return problems
