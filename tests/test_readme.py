"""The README is part of the product: its commands and its config reference stay true."""

from __future__ import annotations

import subprocess
from pathlib import Path

from receiver.config.doc import BEGIN, END, block

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_config_reference_in_the_readme_is_what_the_models_say() -> None:
    start, end = README.index(BEGIN), README.index(END) + len(END)
    assert README[start:end] == block(), "regenerate with: python -m receiver.config.doc"


def test_the_readme_opens_with_the_demo_and_test_commands_and_ci_runs_the_same() -> None:
    first = [line.strip() for line in README.splitlines()[2:4]]
    assert first[0].startswith("make demo") and first[1].startswith("make test")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci.splitlines()[-1]
    makefile = subprocess.run(["make", "-n", "demo", "test"], cwd=ROOT, capture_output=True, text=True)
    assert makefile.returncode == 0, makefile.stderr
    assert "receiver demo" in makefile.stdout and "pytest" in makefile.stdout


def test_every_metric_the_receiver_exports_is_documented() -> None:
    from receiver.metrics import Metrics

    names = {m.name for m in Metrics.create().registry.collect()}
    missing = [n for n in names if n.startswith("receiver_")  # process_*, python_*: the standard ones
               and f"`{n}" not in README and f"`{n}_total" not in README]
    assert not missing, missing
