"""`receiver unmute TARGET|--all [--by NAME]`: remove a run-time mute (see receiver.cli.mute)."""

from receiver.cli.mute import add_unmute_arguments as add_arguments
from receiver.cli.mute import run_unmute as run

__all__ = ["add_arguments", "run"]
