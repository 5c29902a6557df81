"""Rewrite deploy/prometheus's PrometheusRules' groups from their rule files.

rules.yml (finance-service's rollout) and receiver-rules.yml (the receiver's own) are the
sources; prometheusrule.yaml and receiver-prometheusrule.yaml are derived so
prometheus-operator users get exactly the same alerts. Run
`python tests/deploy/sync_prometheusrule.py` after editing a rule file
(test_prometheus_rules checks that each pair agrees).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PAIRS = (
    (PROM / "rules.yml", PROM / "prometheusrule.yaml"),
    (PROM / "receiver-rules.yml", PROM / "receiver-prometheusrule.yaml"),
)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, so the file stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def sync(rules: Path = PROM / "rules.yml", target: Path = PROM / "prometheusrule.yaml") -> None:
    """Replace the PrometheusRule's spec.groups with rules.yml's groups, keeping its header."""
    text = target.read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    doc: dict[str, Any] = yaml.safe_load(text)
    doc["spec"]["groups"] = yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]
    target.write_text(
        header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=200), encoding="utf-8"
    )


if __name__ == "__main__":
    for source, derived in PAIRS:
        sync(source, derived)
