"""``POST /slack/events``: Slack's HTTP door for button clicks and slash commands.

Every request must carry a valid v0 signature (X-Slack-Signature over
``v0:{X-Slack-Request-Timestamp}:{raw body}`` with the signing secret, checked by
slack-sdk's SignatureVerifier, which also refuses a timestamp more than 5 minutes from
now); a signature seen before within that window is a replay. All of these get 401 and
change nothing. A good request is answered 200 at once (Slack waits 3 s) and handled by
the dispatcher in the background.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import parse_qsl

import structlog
from aiohttp import web
from slack_sdk.signature import Clock, SignatureVerifier

from receiver.domain.slack_actions import parse_command, parse_interaction
from receiver.http.slack_actions import SlackDispatcher

log = structlog.get_logger(__name__)

#: Slack's replay window; signatures are remembered this long.
WINDOW_SECONDS = 300
MAX_BODY = 1024 * 1024
MAX_REMEMBERED_SIGNATURES = 100_000


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackEvents:
    """The handler; ``secret`` is read per request so a rotated secret takes effect."""

    def __init__(self, secret: Callable[[], str], dispatcher: SlackDispatcher,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._dispatcher = dispatcher
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def _replayed(self, signature: str) -> bool:
        now = self._clock()
        while self._seen and (next(iter(self._seen.values())) < now - 2 * WINDOW_SECONDS
                              or len(self._seen) > MAX_REMEMBERED_SIGNATURES):
            self._seen.popitem(last=False)
        if signature in self._seen:
            return True
        self._seen[signature] = now
        return False

    def _refuse(self, request: web.Request, why: str) -> web.Response:
        log.warning("slack_request_rejected", reason=why, remote=request.remote)
        return web.json_response({"error": f"invalid request: {why}"}, status=401)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.json_response({"error": "body too large"}, status=413)
        body = await request.read()
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not timestamp or not signature:
            return self._refuse(request, "missing X-Slack-Signature or X-Slack-Request-Timestamp")
        if not timestamp.isdigit():
            return self._refuse(request, "malformed timestamp")
        verifier = SignatureVerifier(self._secret(), clock=_Clock(self._clock))
        if abs(self._clock() - int(timestamp)) > WINDOW_SECONDS:
            return self._refuse(request, "timestamp more than 5 minutes from now")
        if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
            return self._refuse(request, "bad signature")
        if self._replayed(signature):
            return self._refuse(request, "replayed request")
        if request.content_type == "application/json":  # Events API: only the URL check
            try:
                data = json.loads(body)
            except ValueError:
                return web.json_response({"error": "invalid JSON"}, status=400)
            if isinstance(data, dict) and data.get("type") == "url_verification":
                return web.json_response({"challenge": data.get("challenge")})
            return web.Response(status=200)
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if "payload" in form:
            try:
                payload = json.loads(form["payload"])
            except ValueError:
                return web.json_response({"error": "payload is not JSON"}, status=400)
            self._dispatcher.accept(parse_interaction(payload if isinstance(payload, dict) else {}), "http")
        elif "command" in form:
            self._dispatcher.accept(parse_command(form), "http")
        else:
            return web.json_response({"error": "neither an interaction nor a slash command"}, status=400)
        return web.Response(status=200)
