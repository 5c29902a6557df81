"""`receiver demo`: a thin entry; the work is in the simulator package (sim.demo)."""

from __future__ import annotations

from receiver.cli.simulator import entry

add_arguments, run = entry("demo", "sim.demo")
