"""The fake Slack answers channel lookups (conversations.info / conversations.list) as Slack
does, driven by slack-sdk: what `check-config --cluster` relies on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sim.slack import FakeSlack

TOKEN = "xoxb-conversations"
CHANNELS = {"#rollbacks": "C0ROLLBACK", "#finance-alerts": "C0FINANCE", "#payments": "C0PAYMENT"}


@pytest.fixture
async def client() -> AsyncIterator[AsyncWebClient]:
    fake = FakeSlack(TOKEN, dict(CHANNELS))
    await fake.start()
    try:
        yield AsyncWebClient(token=TOKEN, base_url=f"{fake.url}/api/")
    finally:
        await fake.stop()


async def test_conversations_list_pages_through_every_channel_with_its_cursor(client: AsyncWebClient) -> None:
    names: list[str] = []
    async for page in await client.conversations_list(limit=2, types="public_channel,private_channel"):
        assert len(page["channels"]) <= 2
        names += [c["name"] for c in page["channels"]]
    assert sorted(names) == ["finance-alerts", "payments", "rollbacks"]


async def test_conversations_list_of_private_channels_only_is_empty(client: AsyncWebClient) -> None:
    page = await client.conversations_list(types="private_channel")
    assert page["channels"] == [] and page["response_metadata"]["next_cursor"] == ""


async def test_conversations_info_knows_ids_but_not_names(client: AsyncWebClient) -> None:
    info = await client.conversations_info(channel="C0FINANCE")
    assert (info["channel"]["name"], info["channel"]["is_member"]) == ("finance-alerts", True)
    with pytest.raises(SlackApiError) as e:
        await client.conversations_info(channel="#finance-alerts")
    assert e.value.response["error"] == "channel_not_found"


async def test_channel_lookups_need_the_bot_token(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as e:
        await client.conversations_list(token="xoxb-wrong")
    assert e.value.response["error"] == "invalid_auth"
