"""Slack actions fixtures (tests/slack/actions_harness.py)."""

from tests.slack.actions_harness import slack_door

__all__ = ["slack_door"]
