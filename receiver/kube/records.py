"""What a rollback leaves on its Deployments for people using kubectl.

The rollback's own record lives on the target's Lease (receiver.kube.lease); each
Deployment carries only a short ``last-rollback`` annotation.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from receiver.domain.rollback import Phase, RollbackRecord
from receiver.kube.lease import DOMAIN

ANN_LAST = f"{DOMAIN}/last-rollback"
ANN_LAST_PROMOTION = f"{DOMAIN}/last-promotion"


def last_rollback_annotation(record: RollbackRecord) -> str:
    """The short JSON kept on each Deployment: when, why, which alert, outcome, id."""
    body: dict[str, Any] = {
        "id": record.id,
        "when": (record.finished_at or record.started_at).isoformat(),
        "why": record.reason,
        "alert": record.alertname,
        "fingerprints": list(record.fingerprints),
        "rule": record.rule,
        "trigger": record.trigger,
        "outcome": record.phase.value,
        "order": record.order,
    }
    if record.error:
        body["error"] = record.error
    return json.dumps(body, separators=(",", ":"))


def recent_finish_times(records: list[RollbackRecord]) -> tuple[datetime, ...]:
    """When each real (not dry-run) rollback finished, newest first."""
    times = {
        r.id: r.finished_at
        for r in records
        if r.phase in (Phase.SUCCEEDED, Phase.FAILED) and not r.dry_run and r.finished_at
        and not r.is_promotion
    }
    return tuple(sorted((t for t in times.values() if t), reverse=True))
