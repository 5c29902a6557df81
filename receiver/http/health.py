"""The rollout guide's three health tiers.

/health/live: the process answers (liveness; never checks dependencies, so a slow API
server does not get every replica restarted). /health/ready: config loaded and the
Kubernetes API reachable (readiness). /health: everything, for an admin.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from receiver import __version__
from receiver.domain.decisions import applied_mute
from receiver.http.handlers import admin_denied
from receiver.http.runtime import RUNTIME, Runtime

#: What keeps Slack from working for good (None: fine); set by serve.py. Not part of
#: readiness: a Slack outage must not take the receiver out of its Service.
SLACK_CHECK: web.AppKey[Callable[[], str | None]] = web.AppKey("slack_check")


def rss_bytes() -> int:
    """Current resident memory (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


async def live(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    return web.json_response(
        {
            "status": "alive",
            "uptime_seconds": round(time.monotonic() - rt.started_monotonic, 3),
            "memory_rss_bytes": rss_bytes(),
        }
    )


async def checks(rt: Runtime) -> dict[str, str]:
    """Each dependency readiness depends on: "ok" or what is wrong."""
    kube_error = await rt.kube_check()
    watch_error = rt.watch_check()
    return {
        "config": "ok",
        "kubernetes": "ok" if kube_error is None else kube_error,
        "watches": "ok" if watch_error is None else watch_error,
    }


def targets(rt: Runtime) -> dict[str, str]:
    """Each configured target: "ok" or why it cannot be rolled back (a missing Deployment)."""
    broken = rt.service.broken_targets()
    return {t.name: broken.get(t.name, "ok") for t in rt.store.config.targets}


async def ready(request: web.Request) -> web.Response:
    """A broken target does not make the replica unready: 503 here would take every replica
    out of the Service and stop the webhooks of the healthy targets too; it is named in
    the body (and in /health, the gauge receiver_target_misconfigured and Slack)."""
    rt = request.app[RUNTIME]
    found = await checks(rt)
    status = 200 if all(v == "ok" for v in found.values()) else 503
    per_target = targets(rt)
    broken = {k: v for k, v in per_target.items() if v != "ok"}
    return web.json_response(
        {"status": "ready" if status == 200 else "not ready", "checks": found,
         "targets": per_target, **({"broken_targets": sorted(broken)} if broken else {})},
        status=status)


async def full(request: web.Request) -> web.Response:
    if (denied := admin_denied(request)) is not None:
        return denied
    rt = request.app[RUNTIME]
    store = rt.store
    found = await checks(rt)
    slack_check = request.app.get(SLACK_CHECK)
    if slack_check is not None:
        found["slack"] = slack_check() or "ok"
    if rt.actions is not None:  # run-time mutes and the breaker: read from the cluster
        found["shared_state"] = rt.actions.state_problem() or "ok"
    per_target = targets(rt)
    healthy = all(v == "ok" for v in [*found.values(), *per_target.values()])
    settings = store.config.settings
    shared = rt.service.shared_state()
    last = store.last_reload
    now = datetime.now(UTC)
    # the mutes that hold now (an expired one is not "muted"): global, and per target
    muted = applied_mute(settings, None, now, shared)
    muted_targets = {t.name: m.as_json() for t in store.config.targets
                     if (m := applied_mute(settings, t, now, shared)) is not None}
    return web.json_response(
        {
            "status": "ok" if healthy and last.ok else "degraded",
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - rt.started_monotonic, 3),
            "memory_rss_bytes": rss_bytes(),
            "dependencies": {k: v for k, v in found.items() if k != "config"},
            "targets": per_target,
            "config": {
                "path": str(store.path),
                "last_reload": {"ok": last.ok, "at": last.at.isoformat(), "error": last.error},
                "enabled": settings.enabled,
                "dry_run": settings.dry_run,
                "muted": muted is not None,
                "mute": muted.as_json() if muted is not None else None,
                "muted_targets": muted_targets,
                "targets": [t.name for t in store.config.targets],
            },
            "rollbacks_in_progress": rt.running_rollbacks(),
            "breaker": {"open": shared.breaker.is_open, "targets": list(shared.breaker.targets),
                        "reason": shared.breaker.reason or None},
        }
    )
