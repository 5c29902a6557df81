#!/usr/bin/env python3
"""Post one alert to a running receiver as Alertmanager would, dated now.

For trying the receiver by hand (README, "Try it by hand"): the captured bodies in
tests/fixtures/alertmanager/ carry the dates they were captured on, so a resolution
posted from them says "resolved 95 h before". This builds the same webhook body
(version 4) with startsAt = now (and endsAt = now for --resolved) and the fingerprint
Alertmanager would compute from the labels, so firing and resolving the same alert
match up. Standard library only; prints the HTTP status and the receiver's answer, and
exits 0 on a 2xx, 1 otherwise.

    RECEIVER_WEBHOOK_TOKEN=t python3 scripts/post_alert.py                  # HighErrorRate at 7.2 %
    RECEIVER_WEBHOOK_TOKEN=t python3 scripts/post_alert.py --resolved
    python3 scripts/post_alert.py --alertname HighCPUUsage --value 0.93 --token t
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's (Prometheus model's) label-set fingerprint: FNV-1a 64 over sorted pairs."""
    h = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for byte in part:
                h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def body(args: argparse.Namespace, now: datetime) -> dict[str, Any]:
    """An Alertmanager v4 webhook body with one alert, as tests/fixtures/alertmanager/ has."""
    labels = {"alertname": args.alertname, "service": args.service, "version": args.version,
              "severity": args.severity, "rollback": "immediate"}
    for extra in args.label:
        name, _, value = extra.partition("=")
        labels[name] = value
    status = "resolved" if args.resolved else "firing"
    annotations = {"summary": f"{args.alertname} on {args.service} {args.version}", "value": args.value}
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(args.started or now),
        "endsAt": rfc3339(now) if args.resolved else ZERO_TIME,
        "generatorURL": "http://prometheus.example:9090/graph",
        "fingerprint": fingerprint(labels),
    }
    group = {"alertname": args.alertname, "service": args.service}
    return {
        "receiver": "rollback-receiver",
        "status": status,
        "alerts": [alert],
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": f'{{}}/{{rollback="immediate"}}:{{alertname="{args.alertname}", service="{args.service}"}}',
        "truncatedAlerts": 0,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080/webhook",
                   help="the receiver's webhook URL (default http://127.0.0.1:8080/webhook)")
    p.add_argument("--token", default=None,
                   help="bearer token (default: $RECEIVER_WEBHOOK_TOKEN, first of a comma-separated list)")
    p.add_argument("--alertname", default="HighErrorRate", help="default HighErrorRate")
    p.add_argument("--service", default="finance-service", help="default finance-service")
    p.add_argument("--version", default="v2", help="the version label; default v2 (the canary)")
    p.add_argument("--severity", default="critical", help="default critical")
    p.add_argument("--value", default="0.072", help="the `value` annotation the receiver compares (default 0.072)")
    p.add_argument("--label", action="append", default=[], metavar="NAME=VALUE", help="an extra label (repeatable)")
    p.add_argument("--resolved", action="store_true", help="send the alert as resolved now")
    p.add_argument("--started", type=datetime.fromisoformat, default=None, metavar="RFC3339",
                   help="startsAt (default: now); e.g. 2026-12-01T10:00:00Z")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    token = args.token or os.environ.get("RECEIVER_WEBHOOK_TOKEN", "").split(",")[0].strip()
    if not token:
        print("post_alert: no token: pass --token or set RECEIVER_WEBHOOK_TOKEN", file=sys.stderr)
        return 2
    data = json.dumps(body(args, datetime.now(UTC))).encode()
    request = urllib.request.Request(args.url, data=data, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}",
        "User-Agent": "Alertmanager/0.25.0 (post_alert.py)",
    })
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            print(resp.status, resp.read().decode())
            return 0
    except urllib.error.HTTPError as e:
        print(e.code, e.read().decode())
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"post_alert: cannot reach {args.url}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
