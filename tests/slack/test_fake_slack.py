"""The fake Slack answers like Slack: shapes, error codes and limits, seen through slack-sdk."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sim.slack import FakeSlack, sign
from tests.fixtures.slack import TOKEN


def client(fake: FakeSlack, token: str = TOKEN) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=fake.api_url, retry_handlers=[])


async def slack_error(coro: object) -> str:
    with pytest.raises(SlackApiError) as info:
        await coro  # type: ignore[misc]
    return str(info.value.response["error"])


async def test_post_message_answers_with_the_channel_id_and_ts_that_chat_update_needs(fake_slack: FakeSlack) -> None:
    c = client(fake_slack)
    posted = await c.chat_postMessage(channel="#rollbacks", text="hello")
    assert posted["channel"] == "C0ROLLBACK" and posted["message"]["text"] == "hello"
    updated = await c.chat_update(channel=posted["channel"], ts=posted["ts"], text="edited")
    assert updated["ts"] == posted["ts"]
    assert await slack_error(c.chat_update(channel="#rollbacks", ts=posted["ts"], text="x")) == "channel_not_found"
    assert await slack_error(c.chat_update(channel="C0ROLLBACK", ts="1.000000", text="x")) == "message_not_found"
    [msg] = fake_slack.messages("C0ROLLBACK")
    assert msg.text == "edited" and msg.updates == [{"text": "edited", "blocks": []}]


async def test_slack_errors_come_as_ok_false(fake_slack: FakeSlack) -> None:
    assert await slack_error(client(fake_slack, "xoxb-nope").auth_test()) == "invalid_auth"
    c = client(fake_slack)
    assert await slack_error(c.chat_postMessage(channel="#random", text="x")) == "channel_not_found"
    with pytest.warns(UserWarning, match="text"):  # slack-sdk warns too: the fallback text matters
        assert await slack_error(c.chat_postMessage(channel="#rollbacks", text="")) == "no_text"
    assert await slack_error(c.chat_postMessage(channel="#rollbacks", text="x", thread_ts="9.9")) == "thread_not_found"
    too_many = [{"type": "divider"}] * 51
    assert await slack_error(c.chat_postMessage(channel="#rollbacks", text="x", blocks=too_many)) == "invalid_blocks"
    long_header = [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]
    assert await slack_error(c.chat_postMessage(channel="#rollbacks", text="x", blocks=long_header)) == "invalid_blocks"
    assert fake_slack.messages("#rollbacks") == []


async def test_scripted_faults_apply_to_the_next_calls_only(fake_slack: FakeSlack) -> None:
    c = client(fake_slack)
    fake_slack.fail_next("*", status=429, retry_after=7, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as info:
            await c.chat_postMessage(channel="#rollbacks", text="x")
        assert info.value.response.status_code == 429
        assert info.value.response.headers["Retry-After"] == "7"
    fake_slack.fail_next("chat.postMessage", error="is_archived")
    assert await slack_error(c.chat_postMessage(channel="#rollbacks", text="x")) == "is_archived"
    await c.chat_postMessage(channel="#rollbacks", text="through")
    assert [r.outcome for r in fake_slack.requests] == ["429", "429", "is_archived", "ok"]


async def test_the_read_only_view_shows_every_conversation_with_its_thread(fake_slack: FakeSlack) -> None:
    c = client(fake_slack)
    parent = await c.chat_postMessage(channel="#rollbacks", text="parent")
    await c.chat_postMessage(channel="C0ROLLBACK", text="reply", thread_ts=parent["ts"])
    await c.chat_postMessage(channel="C0ROLLBACK", text="loud", thread_ts=parent["ts"], reply_broadcast=True)
    async with aiohttp.ClientSession() as s, s.get(f"{fake_slack.url}/_sim/messages") as resp:
        view = await resp.json()
    msgs = view["channels"]["#rollbacks"]["messages"]
    assert [m["text"] for m in msgs] == ["parent", "loud"]
    assert [r["text"] for r in msgs[0]["replies"]] == ["reply", "loud"]
    assert TOKEN not in str(view)


async def test_wait_for_wakes_on_a_change_and_explains_a_timeout(fake_slack: FakeSlack) -> None:
    c = client(fake_slack)
    with pytest.raises(TimeoutError, match=r"condition not met within 0\.05 s"):
        await fake_slack.wait_for(lambda: fake_slack.messages("#rollbacks"), timeout=0.05)
    await c.chat_postMessage(channel="#rollbacks", text="now")
    [msg] = await fake_slack.wait_for(lambda: fake_slack.messages("#rollbacks"))
    assert msg.text == "now"


async def test_unknown_channels_can_be_created_on_first_use_for_the_demo() -> None:
    fake = FakeSlack(TOKEN, auto_create_channels=True)
    await fake.start()
    try:
        posted = await client(fake).chat_postMessage(channel="#finance-alerts", text="x")
        assert fake.messages("#finance-alerts")[0].ts == posted["ts"]
    finally:
        await fake.stop()


async def test_history_and_replies_return_message_metadata_only_when_asked_and_take_channel_ids(
    fake_slack: FakeSlack,
) -> None:
    c = client(fake_slack)
    md = {"event_type": "rollback", "event_payload": {"rollback_id": "rb-1"}}
    parent = await c.chat_postMessage(channel="#rollbacks", text="parent", metadata=md)
    await c.chat_postMessage(channel="#rollbacks", text="other")
    reply = await c.chat_postMessage(channel=parent["channel"], text="step", thread_ts=parent["ts"],
                                     metadata={"event_type": "rollback_step", "event_payload": {"step": "s1"}})

    plain = await c.conversations_history(channel="C0ROLLBACK")
    assert [m["text"] for m in plain["messages"]] == ["other", "parent"]  # newest first, replies not listed
    assert all("metadata" not in m for m in plain["messages"])
    full = await c.conversations_history(channel="C0ROLLBACK", include_all_metadata=True, limit=1)
    assert [m["text"] for m in full["messages"]] == ["other"] and full["has_more"] is True
    rest = await c.conversations_history(channel="C0ROLLBACK", include_all_metadata=True,
                                         cursor=full["response_metadata"]["next_cursor"])
    [first] = rest["messages"]
    assert first["metadata"] == md and first["reply_count"] == 1 and first["thread_ts"] == parent["ts"]

    thread = await c.conversations_replies(channel="C0ROLLBACK", ts=reply["ts"], include_all_metadata=True)
    assert [m["text"] for m in thread["messages"]] == ["parent", "step"]  # parent first, from any ts in it
    assert thread["messages"][1]["metadata"]["event_payload"] == {"step": "s1"}
    assert await slack_error(c.conversations_history(channel="#rollbacks")) == "channel_not_found"
    assert await slack_error(c.conversations_replies(channel="C0ROLLBACK", ts="1.000000")) == "thread_not_found"
    listed = await c.conversations_list()
    assert any({"id": "C0ROLLBACK", "name": "rollbacks"}.items() <= ch.items() for ch in listed["channels"])



async def test_a_person_can_click_a_button_over_http_and_hear_what_the_app_answered(fake_slack: FakeSlack) -> None:
    """The documented /_sim/request_url and /_sim/click, with a stand-in app that checks
    the signature and answers through response_url, as Slack apps do."""
    signed: list[bool] = []

    async def app_handler(request: web.Request) -> web.Response:
        raw = await request.read()
        ts = request.headers["X-Slack-Request-Timestamp"]
        signed.append(request.headers["X-Slack-Signature"] == sign(fake_slack.signing_secret, ts, raw))
        payload = json.loads((await request.post())["payload"])  # type: ignore[arg-type]
        async with aiohttp.ClientSession() as s:
            await s.post(payload["response_url"], json={"text": f"got {payload['actions'][0]['value']}"})
        return web.Response()

    app = web.Application()
    app.router.add_post("/slack/events", app_handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = AsyncWebClient(token=TOKEN, base_url=fake_slack.api_url)
    posted = await client.chat_postMessage(channel="#rollbacks", text="x", blocks=[
        {"type": "actions", "elements": [{"type": "button", "action_id": "a1", "value": "v1",
                                          "text": {"type": "plain_text", "text": "A"}}]}])
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{fake_slack.url}/_sim/request_url",
                              json={"url": str(server.make_url("/slack/events"))}) as r:
                assert r.status == 200
            async with s.post(f"{fake_slack.url}/_sim/click", json={
                    "user": "U0ALICE", "channel": "#rollbacks", "ts": posted["ts"], "action_id": "a1"}) as r:
                answer = await r.json()
    finally:
        await server.close()
        if client.session is not None:
            await client.session.close()
    assert (answer["via"], answer["acked"], answer["status"]) == ("http", True, 200)
    assert [a["text"] for a in answer["answers"]] == ["got v1"]
    assert signed == [True]
