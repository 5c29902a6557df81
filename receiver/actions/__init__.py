"""Person actions (mute, unmute, close the breaker, roll back, promote, acknowledge), one door for the CLI, HTTP
and Slack: see receiver.actions.people."""

from receiver.actions.parse import parse_duration, parse_time, resolve_until
from receiver.actions.people import Actions, Actor, Done, Promoted, phase_named, phases_for

__all__ = ["Actions", "Actor", "Done", "Promoted", "parse_duration", "parse_time", "phase_named", "phases_for",
           "resolve_until"]
