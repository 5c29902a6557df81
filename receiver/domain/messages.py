"""Slack Block Kit payloads rendered from rollback records and decisions: pure functions.

What the on-call engineer reads at 3 a.m.: one parent message per rollback (what, why,
links, state) updated in place, the timeline as thread replies, a failure broadcast that
pages, and short notes for muted, dry-run, halted and resolved decisions.

Everything that came from an alert, a label, an annotation or the cluster goes through
``esc`` (Slack's three mrkdwn escapes), so an alert cannot ping @channel or forge a link;
only the on-call mention from config.yaml is inserted raw, because it must notify.
Every message carries a fallback ``text`` (mobile notifications show only that), and
every block is clipped to Slack's limits without cutting an escape or a link in half.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from receiver.domain.decisions import Decision, DecisionKind
from receiver.domain.rollback import Phase, RecoveryOutcome, RollbackRecord, Step
from receiver.domain.slack_actions import (
    ACKNOWLEDGE,
    CLOSE_BREAKER,
    LINK_PREFIX,
    MUTE_1H,
    REPROMOTE,
    RETRY,
    ROLLBACK_ANYWAY,
    ROLLBACK_CONFIRMED,
    UNMUTE,
    button_value,
)
from receiver.domain.units import format_value

if TYPE_CHECKING:
    from receiver.domain.settings import Target

Block = dict[str, Any]

#: Slack's documented limits (Block Kit reference).
MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
#: The fallback text could be 40,000 characters; notifications show a line or two.
MAX_TEXT = 3000
#: Not-ready pods listed before "and N more".
MAX_PODS_LISTED = 8


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """A message ready for chat.postMessage / chat.update: fallback text plus blocks."""

    text: str
    blocks: tuple[Block, ...] = ()

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": list(self.blocks)}


# --- escaping and limits -------------------------------------------------------------


def esc(text: object) -> str:
    """Escape &, < and > for mrkdwn: no mentions, links or channel pings from alert text."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """Shorten mrkdwn to ``limit`` characters without splitting an &entity; or a <link>."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    lt, gt = cut.rfind("<"), cut.rfind(">")
    if lt > gt:
        cut = cut[:lt]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    if cut.count("```") % 2:
        cut = cut[: cut.rfind("```")]
    return cut + "…"


def clip_plain(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_url(url: str | None) -> str | None:
    """An http(s) URL fit for ``<url|label>``, or None: no other schemes, no label forging."""
    if not url:
        return None
    url = url.strip()
    if not url.lower().startswith(("http://", "https://")):
        return None
    url = url.replace("|", "%7C").replace(" ", "%20")
    return esc(url)


def link(url: str | None, label: str) -> str | None:
    u = safe_url(url)
    return f"<{u}|{esc(label)}>" if u else None


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": clip_plain(text, MAX_HEADER), "emoji": True}}


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION)}}


def fields(*items: str) -> Block:
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": clip(t, MAX_FIELD)} for t in items[:MAX_FIELDS]],
    }


def context(*items: str) -> Block:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": clip(t, MAX_SECTION)} for t in items if t][
            :MAX_CONTEXT_ELEMENTS
        ],
    }


def message(text: str, *blocks: Block) -> SlackMessage:
    """Assemble a message: text clipped, empty context blocks dropped, at most 50 blocks."""
    kept = tuple(b for b in blocks if b.get("type") != "context" or b.get("elements"))
    return SlackMessage(text=clip(text, MAX_TEXT), blocks=kept[:MAX_BLOCKS])


# --- small formatters ----------------------------------------------------------------


def duration(seconds: float) -> str:
    """42 s, 2.1 s, 3 min, 1 h 5 min: how long, the way a person says it."""
    if math.isnan(seconds) or seconds < 0:
        seconds = 0.0
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def slack_time(at: datetime, fmt: str = "{time_secs}") -> str:
    """A <!date> token: each reader sees their own time zone; the fallback is UTC."""
    fallback = at.strftime("%Y-%m-%d %H:%M:%S UTC" if "date" in fmt else "%H:%M:%S UTC")
    return f"<!date^{int(at.timestamp())}^{fmt}|{fallback}>"


def plain_time(at: datetime) -> str:
    return at.strftime("%H:%M:%S UTC")


def _am_link(external_url: str | None, alertname: str | None) -> str | None:
    if not external_url:
        return None
    url = external_url.rstrip("/") + "/#/alerts"
    if alertname:
        url += "?filter=" + quote('{alertname="' + alertname + '"}', safe="")
    return link(url, "Alertmanager")


# --- the parent message --------------------------------------------------------------


def describe_why(record: RollbackRecord) -> str:
    """Plain text: "HighErrorRate 7.2 % > 5 % (rule error-rate)" or the manual request."""
    if record.is_promotion:
        return record.reason
    if record.trigger == "manual":
        who = record.requested_by or "someone"
        return f"manual rollback requested by {who}" + (f": {record.reason}" if record.reason else "")
    subject = record.alertname or record.rule or "alert"
    if record.value is not None and record.threshold is not None:
        text = f"{subject} {format_value(record.value, record.unit)} > {format_value(record.threshold, record.unit)}"
    elif record.value is not None:
        text = f"{subject} at {format_value(record.value, record.unit)}"
    else:
        text = f"{subject}: {record.reason}" if record.reason else subject
    if record.rule and record.rule != subject:
        text += f" (rule {record.rule})"
    return text


def _rollout_phase(record: RollbackRecord) -> str:
    """The phase field of the parent, when the record knows it."""
    return f"\n*Phase:* {esc(record.rollout_phase)}" if record.rollout_phase else ""


_TRAIL = (Phase.STARTED, Phase.SCALING, Phase.VERIFYING)


def _phase_label(record: RollbackRecord, phase: Phase) -> str:
    p = record.progress
    if phase is Phase.VERIFYING and p.stable_ready is not None:
        desired = p.stable_desired if p.stable_desired is not None else record.replicas
        return f"verifying ({p.stable_ready}/{desired} ready)"
    return phase.value


def describe_state(record: RollbackRecord) -> str:
    """Plain text: "verifying (4/5 ready)", "rolled back in 42 s", "failed after 3 min: …"."""
    took = record.duration_seconds
    if record.phase is Phase.SUCCEEDED:
        done = "promoted" if record.is_promotion else "rolled back"
        return done + (f" in {duration(took)}" if took is not None else "")
    if record.phase is Phase.FAILED:
        text = "failed" + (f" after {duration(took)}" if took is not None else "")
        return text + (f": {record.error}" if record.error else "")
    if record.phase is Phase.WAITING:
        return "waiting for a free slot (too many rollbacks at once)"
    return _phase_label(record, record.phase)


def _state_trail(record: RollbackRecord) -> str:
    """mrkdwn: started → scaling → *verifying (4/5 ready)*, the current state in bold."""
    if record.phase is Phase.WAITING:
        return f":hourglass: *{esc(describe_state(record))}*"
    done = len(_TRAIL) if record.phase.finished else _TRAIL.index(record.phase)
    parts = [ph.value for ph in _TRAIL[:done]]
    if record.phase.finished:
        took = record.duration_seconds
        if record.phase is Phase.SUCCEEDED:
            what = "promoted" if record.is_promotion else "rolled back"
            last = f":white_check_mark: *{what}" + (f" in {duration(took)}*" if took is not None else "*")
        else:
            last = ":x: *failed" + (f" after {duration(took)}*" if took is not None else "*")
    else:
        last = f":hourglass_flowing_sand: *{esc(_phase_label(record, record.phase))}*"
    return " → ".join([*(esc(p) for p in parts), last])


def _pods(record: RollbackRecord) -> str:
    pods = record.progress.not_ready
    if not pods:
        return ""
    lines = [f"• {esc(p)}" for p in pods[:MAX_PODS_LISTED]]
    if len(pods) > MAX_PODS_LISTED:
        lines.append(f"• and {len(pods) - MAX_PODS_LISTED} more")
    return "*Not ready:*\n" + "\n".join(lines)


def _title(record: RollbackRecord) -> str:
    dry = "Dry run: " if record.dry_run else ""
    if record.is_promotion:
        return {Phase.SUCCEEDED: f"✅ {record.target} promoted", Phase.FAILED: f"❌ Promotion of {record.target} "
                "not done"}.get(record.phase, f"⏩ Promoting {record.target}")
    if record.phase is Phase.SUCCEEDED:
        return f"✅ {dry}{record.target} rolled back to {record.stable}"
    if record.phase is Phase.FAILED:
        return f"❌ {dry}Rollback of {record.target} failed"
    return f"⏪ {dry}Rolling back {record.target}"


def runbook_url(record: RollbackRecord, target: Target | None) -> str | None:
    """The alert's own runbook_url annotation when it is an http(s) URL, else the target's."""
    for url in (record.runbook_url, target.runbook_url if target else None):
        if safe_url(url):
            return url
    return None


def _links(record: RollbackRecord, target: Target | None) -> str:
    items = [
        _am_link(record.external_url, record.alertname),
        link(record.generator_url, "Source graph"),
        link(runbook_url(record, target), "Runbook"),
        link(target.dashboard_url if target else None, "Dashboard"),
    ]
    return " · ".join(i for i in items if i)


def _what(record: RollbackRecord) -> tuple[str, str]:
    target = f"*Target*\n`{esc(record.target)}` in namespace `{esc(record.namespace)}`"
    return target, "*Change*\n" + _change(record)


def _change(record: RollbackRecord) -> str:
    """`finance-service-v2` (canary) 1 → 0 and (stable) 4 → 5: before → after, once the
    pre-flight read the Deployments; only the goal before that."""
    b = record.before
    if record.is_promotion:  # the promotion's own goal is in its reason
        c_to, s_to = record.progress.canary_replicas, record.progress.stable_replicas
    else:
        c_to, s_to = 0, record.replicas
    if b is not None and b.canary_replicas is None:
        canary = f"`{esc(record.canary)}` (canary) missing: nothing to scale down"
    else:
        canary = f"`{esc(record.canary)}` (canary) " + _arrow(b.canary_replicas if b else None, c_to)
    stable = f"`{esc(record.stable)}` (stable) " + _arrow(b.stable_replicas if b else None, s_to)
    return f"{canary}\n{stable}"


def _arrow(before: int | None, after: int | None) -> str:
    if after is None:  # a promotion before its first change
        return "" if before is None else f"at {before}"
    return f"→ {after}" if before is None else f"{before} → {after}"


def _images(record: RollbackRecord, target: Target | None) -> str | None:
    """*Images*: v1 `registry/app:1.4.2`, v2 `registry/app:1.5.0` (from the Deployments)."""
    b = record.before
    if b is None or not (b.stable_images or b.canary_images):
        return None
    v1, v2 = (target.versions.stable, target.versions.canary) if target is not None else ("stable", "canary")

    def one(name: str, images: tuple[str, ...]) -> str:
        shown = ", ".join(f"`{esc(i)}`" for i in images) if images else "_none_"
        return f"{esc(name)}: {shown}"

    return f"*Images*\n{one(v1, b.stable_images)}\n{one(v2, b.canary_images)}"


def started_by(record: RollbackRecord) -> str:
    """Plain text: "alert HighErrorRate", "alice from the CLI", "alice from Slack".

    A person's rollback carries who and where in its reason ("requested by alice from
    Slack; overrides …", receiver.actions); ``requested_by`` alone when it does not."""
    if record.trigger != "manual" and not record.is_promotion:
        return f"alert {record.alertname or record.rule or '(unnamed)'}"
    prefix = "requested by "
    if record.reason.startswith(prefix):
        return record.reason[len(prefix):].split(";", 1)[0].strip()
    return record.requested_by or "someone"


def _step_done_at(record: RollbackRecord, name: str) -> datetime | None:
    return next((s.at for s in record.steps if s.name == name and s.ok), None)


def timings(record: RollbackRecord) -> str | None:
    """Plain text: "alert started 03:58:00 UTC → traffic off the canary +2 min → stable
    verified +2 min → recovery confirmed +8 min", each mark counted from the alert's start
    (the rollback's for a person's rollback); None before anything happened."""
    start = record.alert_started_at or (record.recovery.alert_started_at if record.recovery else None)
    origin = (f"alert started {plain_time(start)}" if start is not None
              else f"requested {plain_time(record.started_at)}")
    start = start or record.started_at
    marks: list[tuple[datetime, str]] = []
    if not record.is_promotion:
        off = _step_done_at(record, "scale-canary")
        if off is not None:
            marks.append((off, "traffic off the canary"))
    verified = _step_done_at(record, "verify")
    if verified is not None:
        marks.append((verified, "stable verified"))
    rec = record.recovery
    if rec is not None and rec.outcome is RecoveryOutcome.RECOVERED and rec.checked_at is not None:
        marks.append((rec.checked_at, "recovery confirmed"))
    if not marks:
        return None
    marks.sort(key=lambda m: m[0])
    return " → ".join([origin, *(f"{what} +{_offset((at - start).total_seconds())}" for at, what in marks)])


def _offset(seconds: float) -> str:
    """Like ``duration`` but to the second up to 10 min: "2 min 42 s" (3 a.m. arithmetic)."""
    if 90 <= seconds < 600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    return duration(seconds)


def parent(record: RollbackRecord, target: Target | None = None, extras: Extras | None = None) -> SlackMessage:
    """The one message per rollback, posted at start and updated in place as it goes.

    With ``extras`` (the bot) the links are buttons and, when Slack actions are set up,
    the message carries Mute / Unmute / Retry / Acknowledge."""
    state = describe_state(record)
    during = f" in {record.rollout_phase}" if record.rollout_phase else ""
    text = f"{_title(record)}{during}: {describe_why(record)}. State: {state}"
    what, change = _what(record)
    why_label = "*Requested*" if record.trigger == "manual" else "*Why*"
    items = [what + _rollout_phase(record), change, f"{why_label}\n{esc(describe_why(record))}",
             f"*Started by*\n{esc(started_by(record))}", _images(record, target),
             f"*Order*\n{esc(record.order)}" if record.order else "*Trigger*\n" + esc(record.trigger)]
    blocks: list[Block] = [
        header(_title(record)),
        fields(*(i for i in items if i)),
        section(f"*State:* {_state_trail(record)}"),
    ]
    if (timed := timings(record)) is not None:
        blocks.append(section(f"*Timings:* {esc(timed)}"))
    if record.phase is Phase.FAILED and record.error:
        blocks.append(section(f"*Error:* {esc(record.error)}"))
    if record.progress.not_ready and record.phase is not Phase.SUCCEEDED:
        blocks.append(section(_pods(record)))
    if extras is not None:
        blocks += parent_extras(record, target, extras)
    else:
        blocks.append(context(_links(record, target)))
    blocks.append(context(
        f"rollback `{esc(record.id)}` · started {slack_time(record.started_at)}"
        + (" · timeline in the thread" if record.steps or not record.phase.finished else "")
    ))
    return message(esc(text), *blocks)


# --- thread replies ------------------------------------------------------------------


def step_icon(step: Step) -> str:
    if not step.ok:
        return ":x:"
    return ":warning:" if step.warning else ":white_check_mark:"


def describe_step(record: RollbackRecord, step: Step) -> str:
    """Plain text: "+0.4 s scale-canary: finance-service-v2 scaled 1 -> 0 (took 0.4 s)"."""
    offset = (step.at - record.started_at).total_seconds()
    took = f" (took {duration(step.duration_seconds)})" if step.duration_seconds is not None else ""
    return f"+{duration(offset)} {step.name}: {step.message}{took}"


def step_reply(record: RollbackRecord, step: Step) -> SlackMessage:
    """One line of the timeline, in the parent's thread; pods that were not ready if any."""
    offset = (step.at - record.started_at).total_seconds()
    took = f" _(took {duration(step.duration_seconds)})_" if step.duration_seconds is not None else ""
    line = f"{step_icon(step)} *{esc(step.name)}* {esc(step.message)}{took}"
    blocks: list[Block] = [section(line)]
    if (not step.ok or step.warning or step.name == "verify") and record.progress.not_ready:
        blocks.append(section(_pods(record)))
    blocks.append(context(f"{slack_time(step.at)} · +{duration(offset)} after start"))
    prefix = "Warning: " if step.warning else ("Failed: " if not step.ok else "")
    return message(esc(f"{prefix}{step.name}: {step.message}"), *blocks)


def failure_broadcast(record: RollbackRecord, mention: str = "", target: Target | None = None) -> SlackMessage:
    """A new message that pages: edits do not notify, so a failure is never only an edit.

    ``mention`` comes from config.yaml (``<!subteam^S123>``, ``<!here>``) and is the one
    piece of text inserted unescaped.
    """
    took = record.duration_seconds
    after = f" after {duration(took)}" if took is not None else ""
    p = record.progress
    now = []
    if p.canary_replicas is not None:
        plural = "" if p.canary_replicas == 1 else "s"
        now.append(f"canary `{esc(record.canary)}` at {p.canary_replicas} replica{plural}")
    if p.stable_ready is not None:
        desired = p.stable_desired if p.stable_desired is not None else record.replicas
        now.append(f"stable `{esc(record.stable)}` {p.stable_ready}/{desired} ready")
    lead = f"{mention} " if mention else ""
    body = f"{lead}:rotating_light: *Rollback of `{esc(record.target)}` failed{after}.*"
    if record.error:
        body += f"\n*Error:* {esc(record.error)}"
    if now:
        body += "\n*Now:* " + ", ".join(now)
    blocks: list[Block] = [section(body)]
    if p.not_ready:
        blocks.append(section(_pods(record)))
    blocks.append(section(
        "*Do now:* check the stable's pods and roll back by hand if needed "
        f"(`kubectl -n {esc(record.namespace)} scale deployment {esc(record.canary)} --replicas=0`, "
        f"`kubectl -n {esc(record.namespace)} scale deployment {esc(record.stable)} --replicas={record.replicas}`)."
    ))
    blocks.append(context(_links(record, target), f"rollback `{esc(record.id)}` · why: {esc(describe_why(record))}"))
    text = f"{lead}Rollback of {esc(record.target)} failed{after}" + (f": {esc(record.error)}" if record.error else "")
    return message(text, *blocks)


# --- decisions -----------------------------------------------------------------------


def _decision_alertname(decision: Decision) -> str | None:
    if decision.alertname:
        return decision.alertname
    names = sorted({a.alertname for a in decision.alerts if a.alertname})
    return ", ".join(names) if names else None


def describe_decision_why(decision: Decision) -> str:
    """Plain text: "HighErrorRate 7.2 % > 5 % (rule error-rate)", else the decision's reason."""
    subject = _decision_alertname(decision) or decision.rule or "alert"
    unit = decision.unit if decision.unit != "none" else decision.details.get("unit", "none")
    if decision.value is not None and decision.threshold is not None:
        text = f"{subject} {format_value(decision.value, unit)} > {format_value(decision.threshold, unit)}"
    elif decision.value is not None:
        text = f"{subject} at {format_value(decision.value, unit)}"
    else:
        text = subject
    if decision.rule and decision.rule != subject:
        text += f" (rule {decision.rule})"
    return text


def _would(target: Target) -> str:
    return (
        f"would have rolled back {target.name}: `{esc(target.canary)}` → 0, "
        f"`{esc(target.stable)}` → {target.replicas}"
    )


def _decision_links(decision: Decision, target: Target) -> str:
    gen = decision.generator_url or next((a.generator_url for a in decision.alerts if a.generator_url), None)
    items = [
        _am_link(decision.external_url, _decision_alertname(decision)),
        link(gen, "Source graph"),
        link(_alert_runbook(decision) or target.runbook_url, "Runbook"),
        link(target.dashboard_url, "Dashboard"),
    ]
    return " · ".join(i for i in items if i)


def _alert_runbook(decision: Decision) -> str | None:
    """The alert's own runbook_url annotation (preferred over the target's)."""
    return next((a.annotations["runbook_url"] for a in decision.alerts if a.annotations.get("runbook_url")), None)


def muted_until(decision: Decision) -> str:
    until = decision.mute.until if decision.mute else None
    if until is None:
        return "until unmuted"
    return f"until {slack_time(until, '{date_short_pretty} {time}')}"


def decision_message(decision: Decision, target: Target, mention: str = "",
                     extras: Extras | None = None) -> SlackMessage | None:
    """Muted, dry-run, disabled, halted and misconfigured decisions as a short note; None for the rest.

    Roll-backs are told through their record (parent and thread); repeats, already
    rolled back and no-rule-matched say nothing; resolved goes to resolved_followup.
    A muted note names the mute the decision carries (the one that applied), never a
    guess from the config.
    """
    why = esc(describe_decision_why(decision))
    reason = esc(decision.reason)
    links = _decision_links(decision, target)
    kind = decision.kind
    if kind is DecisionKind.MUTED:
        mute = decision.mute
        who = esc(mute.by if mute else "an operator")
        until = muted_until(decision)
        plain_until = mute.until.strftime("%Y-%m-%d %H:%M UTC") if mute and mute.until else "unmuted"
        because = f": {esc(mute.reason)}" if mute else ""
        body = (f":no_bell: *Muted:* {_would(target)}.\n*Why:* {why}\n"
                f"*Muted by* {who} {until}{because}")
        text = f"Muted: would have rolled back {target.name} ({why}); muted by {who} until {plain_until}{because}"
        return message(text, section(body), context(links, reason),
                       *note_buttons("muted", target, decision, extras))
    if kind is DecisionKind.DRY_RUN:
        body = f":test_tube: *Dry run:* {_would(target)}.\n*Why:* {why}\n{reason}"
        text = f"Dry run: would have rolled back {target.name} ({why})"
        return message(text, section(body), context(links, "settings.dry_run is on: nothing was changed"))
    if kind is DecisionKind.DISABLED:
        body = f":double_vertical_bar: *Receiver disabled:* {_would(target)}.\n*Why:* {why}\n{reason}"
        text = f"Receiver disabled: would have rolled back {target.name} ({why})"
        return message(text, section(body), context(links, "settings.enabled is false in config.yaml"))
    if kind is DecisionKind.HALTED:
        lead = f"{mention} " if mention else ""
        body = (f"{lead}:octagonal_sign: *Not rolling back `{esc(target.name)}`:* {reason}\n*Alert:* {why}\n"
                "Something keeps scaling the canary back up after each rollback (Argo CD, Flux, "
                "an HPA or a person?). Stop it at the source, then roll back by hand.")
        text = f"{lead}Not rolling back {target.name}: {reason}"
        return message(text, section(body), context(links), *note_buttons("halted", target, decision, extras))
    if kind is DecisionKind.WARNED:
        return warning_note(decision, target, links)
    if kind is DecisionKind.MISCONFIGURED:
        lead = f"{mention} " if mention else ""
        missing = esc(decision.details.get("missing") or "a Deployment")
        body = (f"{lead}:rotating_light: *Cannot roll back `{esc(target.name)}`:* {missing} "
                f"not found.\n*Alert:* {why}\n"
                "Fix the target in config.yaml (a typo? the wrong namespace or cluster?) and "
                "reload; Alertmanager re-sends the alert until then.")
        text = f"{lead}Cannot roll back {target.name}: {reason}"
        return message(text, section(body), context(links))
    if kind is DecisionKind.BREAKER_OPEN:
        return breaker_opened(decision, target, mention)
    if kind is DecisionKind.NOT_CANARY:
        return not_canary_message(decision, target, mention)
    return None


def warning_note(decision: Decision, target: Target, links: str = "") -> SlackMessage:
    """A warning-level alert, told once per alert group: which week, what crossed which
    level, and that nothing was changed (the rollout guide's warnings are for people)."""
    phase = decision.phase
    week = esc(str(phase)) if phase is not None else "unknown (canary replicas not known yet)"
    names = sorted({a.alertname for a in decision.alerts if a.alertname}) or ["alert"]
    lines = []
    for a in decision.alerts[:MAX_PODS_LISTED]:
        what = a.annotations.get("summary") or a.alertname or a.fingerprint
        level = a.annotations.get("threshold") or a.labels.get("threshold")
        lines.append(f"• {esc(what)}" + (f" (level {esc(level)})" if level else ""))
    if len(decision.alerts) > MAX_PODS_LISTED:
        lines.append(f"• and {len(decision.alerts) - MAX_PODS_LISTED} more")
    body = (f":warning: *Warning for `{esc(target.name)}`* in phase *{week}*\n" + "\n".join(lines)
            + "\nNothing is changed for a warning: warnings reach people, not the cluster.")
    text = f"Warning for {esc(target.name)} ({week}): {esc(', '.join(names))}; nothing is changed for a warning"
    return message(text, section(body), context(links, esc(decision.reason)))


def breaker_opened(decision: Decision, target: Target, mention: str = "") -> SlackMessage:
    """The one loud message when the blast-radius breaker opens: which targets, the likely
    common cause, and how to close it."""
    lead = f"{mention} " if mention else ""
    earlier = [t for t in decision.details.get("breaker_targets", "").split(",") if t]
    names = ", ".join(f"`{esc(t)}`" for t in [*earlier, target.name])
    body = (f"{lead}:rotating_light: *Blast-radius breaker open: automatic rollbacks stopped.* "
            f"Alerts called for rolling back {names} within a few minutes: many services failing "
            "at once points at a common cause (infrastructure: nodes, network, DNS, a shared "
            f"database), not their canaries. `{esc(target.name)}` was *not* rolled back; rollbacks "
            "already started finish.\n*Alert:* " + esc(describe_decision_why(decision)) +
            "\nFind the common cause; roll back by hand with `receiver rollback TARGET` if needed; "
            "then close the breaker: `receiver breaker close`.")
    text = (f"{lead}Blast-radius breaker open: automatic rollbacks stopped after alerts for "
            f"{', '.join([*earlier, target.name])}; likely a common (infrastructure) cause")
    return message(text, section(body), context(_decision_links(decision, target), esc(decision.reason)))


def announcement(text: str, emoji: str = ":information_source:") -> SlackMessage:
    """A person's action (mute, unmute, breaker closed) or a mute's expiry, as one line."""
    return message(text, section(f"{emoji} {esc(text)}"))


def not_canary_message(decision: Decision, target: Target, mention: str = "") -> SlackMessage:
    """ "v1 and v2 both at 7 % errors: rolling back would not help": pages, nothing was changed."""
    v = target.versions
    name = esc(_decision_alertname(decision) or decision.rule or "the alert")
    stable = esc(decision.details.get("stable_value", "?"))
    canary = esc(decision.details.get("canary_value", "?"))
    lead = f"{mention} " if mention else ""
    headline = f"{esc(v.stable)} and {esc(v.canary)} both sick on {name}: rolling back would not help"
    body = (f"{lead}:rotating_light: *{headline}.*\n"
            f"*{esc(v.stable)}* (`{esc(target.stable)}`): {stable} · *{esc(v.canary)}* (`{esc(target.canary)}`): "
            f"{canary}\nNothing was changed. The cause is probably shared (a dependency, the database, "
            "the infrastructure): look there, not at the new version.")
    plain = (f"{v.stable} and {v.canary} both sick on {_decision_alertname(decision) or 'the alert'} "
             f"({v.stable} {decision.details.get('stable_value', '?')}, {v.canary} "
             f"{decision.details.get('canary_value', '?')}): rolling back {target.name} would not help")
    return message(f"{lead}{esc(plain)}", section(body),
                   context(_decision_links(decision, target), esc(decision.reason)))


def recovery_reply(record: RollbackRecord, mention: str = "") -> SlackMessage | None:
    """The recovery watch's outcome, for the rollback's thread; None while still watching.

    "NOT recovered" starts with the on-call mention and is meant to be broadcast to the
    channel (reply_broadcast): the rollback did not help, a person must look now.
    """
    rec = record.recovery
    if rec is None or not rec.outcome.finished:
        return None
    if rec.outcome is RecoveryOutcome.RECOVERED:
        return message(esc(rec.message), section(f":large_green_circle: *{esc(rec.message)}*"),
                       context(f"rollback `{esc(record.id)}` · read from Prometheus"))
    if rec.outcome is RecoveryOutcome.NOT_RECOVERED:
        lead = f"{mention} " if mention else ""
        body = (f"{lead}:rotating_light: *{esc(rec.message)}*\nThe canary is out and the metric is still "
                "over its threshold: look for a shared cause (a dependency, the database, the infrastructure).")
        return message(f"{lead}{esc(rec.message)}", section(body),
                       context(f"rollback `{esc(record.id)}` · read from Prometheus"))
    return message(esc(rec.message), section(f":grey_question: *{esc(rec.message)}*"),
                   context(f"rollback `{esc(record.id)}` · check the dashboard by hand"))


def resolved_followup(decision: Decision, record: RollbackRecord | None) -> SlackMessage | None:
    """ "HighErrorRate resolved 3 min after the rollback", for the rollback's thread.

    None when there is no rollback to follow up, or the resolved alerts started after it
    finished (a later, unrelated episode).
    """
    if record is None:
        return None
    ended = [a for a in decision.alerts if not a.firing]
    related = [
        a for a in ended
        if a.fingerprint in record.fingerprints
        or record.finished_at is None
        or a.starts_at <= record.finished_at
    ]
    if ended and not related:
        return None
    name = _decision_alertname(decision) or record.alertname or "The alert"
    end_times = [a.ended_at for a in related if a.ended_at is not None]
    when = max(end_times) if end_times else None
    if record.finished_at is None:
        rel = "while the rollback was still running"
    elif when is None:
        rel = "after the rollback"
    elif when >= record.finished_at:
        rel = f"{duration((when - record.finished_at).total_seconds())} after the rollback"
    else:
        rel = f"{duration((record.finished_at - when).total_seconds())} before the rollback finished"
    line = f":large_green_circle: *{esc(name)}* resolved {rel}."
    blocks: list[Block] = [section(line)]
    if when is not None:
        blocks.append(context(f"resolved at {slack_time(when)} · rollback `{esc(record.id)}`"))
    return message(f"{esc(name)} resolved {rel}", *blocks)


# --- buttons: links and actions (Slack actions, receiver/http/slack_actions.py) -------

#: Slack's limits for buttons and confirm dialogs.
MAX_BUTTON_TEXT, MAX_URL, MAX_CONFIRM_TEXT = 75, 3000, 300
#: The dashboard's time range: from this long before the rollback to this long after its end.
DASHBOARD_MARGIN_SECONDS = 15 * 60


@dataclass(frozen=True, slots=True)
class Extras:
    """What the bot adds to messages: the links (as buttons when Slack actions are set up,
    since a link button's click is an interaction too), action buttons, who acknowledged
    the rollback, Alertmanager's URL for the silence link."""

    actions: bool = False
    acked_by: str | None = None  # a Slack user id
    alertmanager_url: str | None = None
    runbook_url: str | None = None  # the alert's own runbook_url annotation, when known


def _plain(text: str, limit: int = MAX_BUTTON_TEXT) -> Block:
    return {"type": "plain_text", "text": clip_plain(text, limit), "emoji": True}


def url_button(name: str, label: str, url: str | None) -> Block | None:
    """A link as a button (Slack opens it; the click also reaches us and is ignored)."""
    if not url or not url.lower().startswith(("http://", "https://")) or len(url) > MAX_URL:
        return None
    return {"type": "button", "action_id": LINK_PREFIX + name, "text": _plain(label), "url": url}


def action_button(action_id: str, label: str, value: str, *, style: str | None = None,
                  confirm: tuple[str, str, str] | None = None) -> Block:
    """A button that acts; ``confirm`` = (title, text, confirm label) shows Slack's dialog first."""
    b: Block = {"type": "button", "action_id": action_id, "text": _plain(label), "value": value}
    if style:
        b["style"] = style
    if confirm:
        title, text, yes = confirm
        b["confirm"] = {"title": _plain(title, 100), "text": {"type": "plain_text", "text": clip_plain(text, 300)},
                        "confirm": _plain(yes, 30), "deny": _plain("Cancel", 30), "style": "danger"}
    return b


def actions_block(block_id: str, *elements: Block | None) -> Block | None:
    kept = [e for e in elements if e is not None][:25]
    return {"type": "actions", "block_id": block_id, "elements": kept} if kept else None


def dashboard_url(template: str | None, start: datetime, end: datetime | None) -> str | None:
    """The target's dashboard_url with ``{from}``/``{to}`` (epoch ms, as Grafana's from/to) filled in."""
    if not template:
        return None
    since = int(start.timestamp() * 1000) - DASHBOARD_MARGIN_SECONDS * 1000
    until = str(int(end.timestamp() * 1000) + DASHBOARD_MARGIN_SECONDS * 1000) if end else "now"
    return template.replace("{from}", str(since)).replace("{to}", until)


def silence_url(alertmanager_url: str | None, labels: dict[str, str]) -> str | None:
    """Alertmanager's new-silence form, prefilled with the alert's labels as matchers."""
    if not alertmanager_url or not labels:
        return None
    quoted = {k: v.replace("\\", "\\\\").replace('"', '\\"') for k, v in labels.items()}
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted(quoted.items()))
    return alertmanager_url.rstrip("/") + "/#/silences/new?filter=" + quote("{" + matchers + "}", safe="")


def _confirm_rollback(target: Target | None, name: str) -> tuple[str, str, str]:
    change = (f"Scale {target.canary} to 0 and {target.stable} to {target.replicas} in {target.namespace}."
              if target else f"Roll {name} back to its stable Deployment.")
    return f"Roll back {name}?", change, "Roll back"


def parent_extras(record: RollbackRecord, target: Target | None, extras: Extras) -> list[Block]:
    """Links (buttons with Slack actions, else mrkdwn links), who took it, the action buttons."""
    labels = {"alertname": record.alertname} if record.alertname else {}
    if labels and target is not None:  # the target's equality matchers narrow the silence to it
        labels.update({m.name: m.value for m in target.parsed if m.op == "="})
    links = [
        ("runbook", "Runbook", extras.runbook_url or runbook_url(record, target)),
        ("graph", "Prometheus graph", record.generator_url),
        ("dashboard", "Dashboard",
         dashboard_url(target.dashboard_url if target else None, record.started_at, record.finished_at)),
        ("silence", "Silence in Alertmanager", silence_url(extras.alertmanager_url, labels)),
    ]
    out: list[Block | None]
    if extras.actions:
        out = [actions_block("links", *(url_button(name, label, url) for name, label, url in links))]
    else:  # no interactivity endpoint: a link button's click would show an error in Slack
        plain = [_am_link(record.external_url, record.alertname), *(link(url, label) for _, label, url in links)]
        out = [context(" · ".join(x for x in plain if x))]
    if extras.acked_by:
        out.append(context(f":raising_hand: acknowledged by <@{esc(extras.acked_by)}>"))
    if extras.actions:
        value = button_value(record.target, record.id)
        out.append(actions_block(
            "actions",
            action_button(MUTE_1H, "Mute target 1 h", value),
            action_button(UNMUTE, "Unmute", value),
            action_button(RETRY, "Retry rollback", value, style="danger",
                          confirm=_confirm_rollback(target, record.target))
            if record.phase is Phase.FAILED else None,
            action_button(REPROMOTE, "Re-promote", value, confirm=_confirm_repromote(record))
            if _repromotable(record) else None,
            None if extras.acked_by else action_button(ACKNOWLEDGE, "Acknowledge", value, style="primary"),
        ))
    return [b for b in out if b is not None]


def _repromotable(record: RollbackRecord) -> bool:
    """A rollback that took the canary out of a known phase: it can be put back."""
    return (not record.is_promotion and record.phase is Phase.SUCCEEDED and not record.dry_run
            and bool(record.rollout_phase))


def _confirm_repromote(record: RollbackRecord) -> tuple[str, str, str]:
    before = (record.rollout_phase or "").split(" (")[0]
    return ("Re-promote?", f"Put {record.canary} back to {before}, the phase before this rollback, "
            "after the promotion gate's review (a gate that is not passed refuses).", "Re-promote")


def note_buttons(note: str, target: Target, decision: Decision | None, extras: Extras | None) -> list[Block]:
    """Buttons under a note: muted -> Unmute; breaker_open -> Close breaker; halted or
    not_canary -> Roll back anyway (with a confirm dialog)."""
    if extras is None or not extras.actions:
        return []
    value = button_value(target.name)
    if note == "muted":
        button = action_button(UNMUTE, "Unmute", value)
    elif note == "breaker_open":
        button = action_button(CLOSE_BREAKER, "Close breaker", value, confirm=(
            "Close the breaker?", "Automatic rollbacks resume for every target.", "Close breaker"))
    else:
        button = action_button(ROLLBACK_ANYWAY, "Roll back anyway", value, style="danger",
                               confirm=_confirm_rollback(target, target.name))
    block = actions_block("note_actions", button)
    return [block] if block else []


def confirm_rollback(target: Target) -> SlackMessage:
    """The ephemeral answer to ``/rollback TARGET``: what would change, and a button to do it."""
    title, change, yes = _confirm_rollback(target, target.name)
    button = action_button(ROLLBACK_CONFIRMED, yes, button_value(target.name), style="danger",
                           confirm=(title, change, yes))
    return message(f"{title} {change}", section(f"*{esc(title)}* {esc(change)}"),
                   *[b for b in (actions_block("confirm", button),) if b])
