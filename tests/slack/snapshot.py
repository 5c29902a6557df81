"""Snapshot files of rendered Slack payloads, so a reviewer reads what people will see.

A test asserts the payload equals tests/slack/snapshots/<name>.json. Run with
UPDATE_SNAPSHOTS=1 to (re)write them after an intended change, then read the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SNAPSHOTS = Path(__file__).parent / "snapshots"


def assert_snapshot(name: str, payload: Any) -> None:
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no snapshot {path.name}: run with UPDATE_SNAPSHOTS=1 and review it"
    expected = path.read_text(encoding="utf-8")
    assert json.loads(text) == json.loads(expected), (
        f"{path.name} changed; if intended, run with UPDATE_SNAPSHOTS=1 and review the diff"
    )
