"""Validate-and-decide time for large webhook payloads (issue 3: 10,000 alerts < 100 ms).

Prints figures; asserts nothing (shared machines are noisy: read the median).

    python bench/decide.py [--alerts 10000] [--runs 15]

For each shape it times parse_payload(bytes) (pydantic-core validating straight from
the body) and decide() separately and together, with the garbage collector on (what a
server sees) and off (the work itself: a 10,000-alert payload allocates ~50,000
objects, enough to trigger collections that cost as much as the validation).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver.domain.alerts import parse_payload  # noqa: E402
from receiver.domain.decisions import TargetState, decide  # noqa: E402
from receiver.domain.settings import load_config  # noqa: E402

NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)


def alert(i: int, name: str, value: str, service: str = "finance-service") -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {
            "alertname": name,
            "service": service,
            "severity": "critical",
            "pod": f"{service}-v2-7c9f-{i}",
            "instance": f"10.0.{i // 250}.{i % 250}:8080",
        },
        "annotations": {"summary": f"{name} on {service}", "value": value},
        "startsAt": "2026-11-27T03:39:37.565842337Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=x",
        "fingerprint": f"{i:016x}",
    }


def body(alerts: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "receiver": "rollback",
            "status": "firing",
            "alerts": alerts,
            "groupLabels": {"service": "finance-service"},
            "commonLabels": {"service": "finance-service"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "version": "4",
            "groupKey": '{}:{service="finance-service"}',
            "truncatedAlerts": 0,
        }
    ).encode()


def shapes(n: int) -> dict[str, bytes]:
    names = ["HighErrorRate", "HighLatencyP95", "HighCPUUsage", "DiskAlmostFull"]
    return {
        f"{n} alerts, one rule, all above threshold": body([alert(i, "HighErrorRate", "0.072") for i in range(n)]),
        f"{n} alerts, all below threshold (every value parsed)": body(
            [alert(i, "HighErrorRate", "0.01") for i in range(n)]
        ),
        f"{n} alerts, 4 alertnames, 2 services": body(
            [alert(i, names[i % 4], "0.5", "finance-service" if i % 2 else "billing") for i in range(n)]
        ),
    }


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def fmt(ms: list[float]) -> str:
    return f"median {statistics.median(ms):6.1f} ms  min {min(ms):6.1f}  max {max(ms):6.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    config = load_config(ROOT / "config.yaml")
    states = {"finance-service": TargetState(canary_replicas=1, stable_replicas=4)}
    print(f"python {sys.version.split()[0]}, goal: validate + decide {args.alerts} alerts < 100 ms")
    for label, raw in shapes(args.alerts).items():
        payload = parse_payload(raw)
        print(f"\n{label} ({len(raw) / 1e6:.1f} MB body)")
        for gc_on in (True, False):
            if not gc_on:
                gc.disable()
            try:
                parse = timed(lambda raw=raw: parse_payload(raw), args.runs)
                dec = timed(lambda p=payload: decide(p, config, states, NOW), args.runs)
                both = timed(lambda raw=raw: decide(parse_payload(raw), config, states, NOW), args.runs)
            finally:
                gc.enable()
            tag = "gc on " if gc_on else "gc off"
            print(f"  [{tag}] parse_payload   {fmt(parse)}")
            print(f"  [{tag}] decide          {fmt(dec)}")
            print(f"  [{tag}] parse + decide  {fmt(both)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
