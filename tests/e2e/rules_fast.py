"""Derive a fast variant of deploy/prometheus/rules.yml for end-to-end tests.

The shipped rules wait minutes (``for: 2m``, 2-5 minute rate windows, 30 s evaluation)
as production alerting should. A test cannot: it needs an alert to fire within seconds
of the fake service going bad and to resolve within seconds of it stopping. The fast
variant keeps every expression, label and annotation and changes only time: ``for: 0s``,
group interval 1 s and every range selector shortened to ``window`` (a few 1 s scrapes).
An alert with a fast twin (same name, shorter window and ``for``, higher threshold) keeps
only its first, careful rule: the variant is fast already, and one alert per condition
keeps the tests' counts of deliveries and decisions as a single rule gives them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"

_RANGE = re.compile(r"\[\s*\d+(?:ms|[smhdwy])\s*\]")


def fast_rules(src: Path, dst: Path, *, window: str = "5s", hold: str = "0s") -> Path:
    """Write the fast variant of ``src`` (usually RULES) to ``dst`` and return ``dst``.

    ``hold`` replaces every ``for:``; setting it to ``window`` makes an alert fire only
    once its window is full of the new behaviour, so its value is the steady one.
    """
    doc: dict[str, Any] = yaml.safe_load(src.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        group["interval"] = "1s"
        seen: set[str] = set()
        group["rules"] = [
            r for r in group["rules"]
            if "alert" not in r or not (r["alert"] in seen or seen.add(r["alert"]))
        ]
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub(f"[{window}]", rule["expr"])
            if "for" in rule:
                rule["for"] = hold
    dst.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return dst
