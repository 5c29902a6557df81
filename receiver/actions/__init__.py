"""Person actions (mute, unmute, close the breaker, roll back), one door for the CLI, HTTP
and Slack: see receiver.actions.people."""

from receiver.actions.parse import parse_duration, parse_time, resolve_until
from receiver.actions.people import Actions, Actor, Done

__all__ = ["Actions", "Actor", "Done", "parse_duration", "parse_time", "resolve_until"]
