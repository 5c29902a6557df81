"""Which mute Slack names: the one decide applied, never one guessed from the config."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from receiver.domain.alerts import parse_payload
from receiver.domain.decisions import Decision, DecisionKind, decide
from receiver.domain.settings import Config, Mute
from receiver.notify.factory import make_notifier
from sim.slack import FakeSlack
from tests.fixtures.receiver import firing_payload
from tests.fixtures.slack import FAST, slack_config

NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
FREEZE = Mute(reason="release freeze", by="alice", until=NOW + timedelta(hours=2))
OLD = Mute(reason="old investigation", by="alice", until=NOW - timedelta(days=1))


def muted(global_mute: Mute | None, target_mute: Mute | None) -> Config:
    cfg = slack_config(mode="webhook")
    targets = [cfg.targets[0].model_copy(update={"mute": target_mute}), *cfg.targets[1:]]
    return cfg.model_copy(update={"settings": cfg.settings.model_copy(update={"mute": global_mute}),
                                  "targets": targets})


def decided(cfg: Config) -> Decision:
    payload = parse_payload(json.dumps(firing_payload()))
    [d] = [d for d in decide(payload, cfg, {}, NOW) if d.target == "finance-service"]
    assert d.kind is DecisionKind.MUTED
    return d


async def told(fake_slack: FakeSlack, cfg: Config) -> str:
    """The muted note the webhook notifier posts for the decision decide made."""
    n = make_notifier(cfg.slack, {"SLACK_WEBHOOK_URL": fake_slack.webhook_url}, config=lambda: cfg, policy=FAST)
    await n.start()
    try:
        n.decision(decided(cfg), cfg.targets[0])
        await n.drained()
    finally:
        await n.close(1.0)
    [msg] = fake_slack.messages("#rollbacks")
    return msg.text


async def test_slack_names_the_global_mute_not_an_expired_target_mute_by_the_same_person(
    fake_slack: FakeSlack,
) -> None:
    text = await told(fake_slack, muted(FREEZE, OLD))
    assert "muted by alice until 2026-11-27 06:00 UTC: release freeze" in text
    assert "old investigation" not in text


async def test_slack_names_the_target_mute_when_it_is_the_one_that_applies(fake_slack: FakeSlack) -> None:
    own = Mute(reason="digging in", by="sam")
    text = await told(fake_slack, muted(None, own))
    assert "muted by sam until unmuted: digging in" in text


async def test_slack_names_the_global_mute_over_an_active_target_mute(fake_slack: FakeSlack) -> None:
    own = Mute(reason="digging in", by="sam")
    text = await told(fake_slack, muted(FREEZE, own))
    assert "muted by alice until 2026-11-27 06:00 UTC: release freeze" in text
    assert "digging in" not in text
