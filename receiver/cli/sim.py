"""`receiver sim`: a thin entry; the work is in the simulator package (sim.cli)."""

from __future__ import annotations

from receiver.cli.simulator import entry

add_arguments, run = entry("sim", "sim.cli")
