"""Console delivery: the Slack conversation as readable lines in a terminal (the demo's mode).

Same events, same order, same words as the Slack messages, rendered with rich. Text
from alerts goes in as rich Text (never markup), so it cannot restyle the terminal.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from receiver.domain import messages
from receiver.domain.decisions import DecisionKind
from receiver.domain.rollback import Phase, RollbackRecord
from receiver.metrics import Metrics
from receiver.notify.base import (
    MAX_REMEMBERED,
    AnnounceEvent,
    ConfigProvider,
    DecisionEvent,
    DeliveryPolicy,
    Event,
    QueuedNotifier,
    RollbackEvent,
)

if TYPE_CHECKING:
    from rich.console import Console

    from receiver.domain.settings import SlackSettings

_STYLE = {Phase.SUCCEEDED: "bold green", Phase.FAILED: "bold red"}
_ICON = {Phase.WAITING: "⏸", Phase.STARTED: "⏪", Phase.SCALING: "⏪", Phase.VERIFYING: "⏳",
         Phase.SUCCEEDED: "✅", Phase.FAILED: "❌"}
_DECISION_ICON = {DecisionKind.MUTED: ("🔕", "yellow"), DecisionKind.DRY_RUN: ("🧪", "cyan"),
                  DecisionKind.DISABLED: ("⏸", "yellow"), DecisionKind.HALTED: ("🛑", "bold red"),
                  DecisionKind.RESOLVED: ("🟢", "green"), DecisionKind.WARNED: ("⚠", "yellow")}


def _clock(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%H:%M:%S")


class ConsoleNotifier(QueuedNotifier):
    """Prints the conversation; ``console`` defaults to stdout."""

    mode = "console"

    def __init__(
        self,
        settings: SlackSettings,
        *,
        console: Console | None = None,
        config: ConfigProvider | None = None,
        policy: DeliveryPolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(settings, config=config, policy=policy, metrics=metrics)
        if console is None:
            from rich.console import Console  # rich only in console mode: serve in bot mode never loads it

            console = Console(highlight=False, soft_wrap=True)
        self.console = console
        self._shown: OrderedDict[str, str] = OrderedDict()  # rollback id -> last state line
        self._paged: set[str] = set()

    def _line(self, *parts: tuple[str, str] | str) -> None:
        from rich.text import Text

        self.console.print(Text.assemble(*parts))

    async def deliver(self, ev: Event) -> None:
        if isinstance(ev, AnnounceEvent):
            text = ev.message.text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
            self._line((_clock(), "dim"), " ", ("📢 ", "bold"), text)
        elif isinstance(ev, RollbackEvent):
            self._rollback(ev.record, ev)
        else:
            self._decision(ev)

    def _rollback(self, rec: RollbackRecord, ev: RollbackEvent) -> None:
        state = messages.describe_state(rec)
        style = _STYLE.get(rec.phase, "bold")
        if rec.id not in self._shown:
            who = "🧪 dry run: " if rec.dry_run else ""
            self._line((_clock(rec.started_at), "dim"), " ", (f"⏪ {who}rolling back {rec.target}", "bold magenta"),
                       "  ", messages.describe_why(rec))
            self._line(" " * 9, (f"{rec.canary} → 0, {rec.stable} → {rec.replicas} in namespace {rec.namespace}"
                                 f" · rollback {rec.id}", "dim"))
        if ev.step is not None and ev.step.name == "preflight" and rec.before is not None:
            b = rec.before  # what the parent's Images and Change fields say in Slack
            self._line(" " * 9, (f"{rec.stable} {', '.join(b.stable_images) or '-'} · {rec.canary} "
                                 f"{', '.join(b.canary_images) or '-'}", "dim"))
        if ev.step is not None:
            st = ev.step
            icon, st_style = ("✗", "red") if not st.ok else (("⚠", "yellow") if st.warning else ("✓", "green"))
            took = f" (took {messages.duration(st.duration_seconds)})" if st.duration_seconds is not None else ""
            self._line((_clock(st.at), "dim"), "    ", (icon, st_style), " ", (f"{st.name:<13}", "bold"), " ",
                       st.message, (took, "dim"))
            if (not st.ok or st.warning) and rec.progress.not_ready:
                for pod in rec.progress.not_ready[: messages.MAX_PODS_LISTED]:
                    self._line(" " * 15, ("not ready: ", "yellow"), pod)
        if self._shown.get(rec.id) != state:
            self._shown[rec.id] = state
            self._shown.move_to_end(rec.id)
            while len(self._shown) > MAX_REMEMBERED:
                self._shown.popitem(last=False)
            if rec.phase is not Phase.STARTED:
                self._line((_clock(rec.finished_at), "dim"), " ", (f"{_ICON[rec.phase]} {rec.target}", style),
                           "  ", (state, style))
            if rec.phase.finished and (timed := messages.timings(rec)) is not None:
                self._line(" " * 9, (timed, "dim"))
        if rec.phase is Phase.FAILED and rec.id not in self._paged:
            self._paged.add(rec.id)
            mention = self.slack_settings().oncall_mention or "on-call"
            self._line(" " * 9, (f"📣 would page {mention} in Slack", "bold red"))

    def _decision(self, ev: DecisionEvent) -> None:
        d = ev.decision
        if d.kind is DecisionKind.RESOLVED:
            msg = messages.resolved_followup(d, self.latest(ev.record) if ev.record else None)
        else:
            msg = messages.decision_message(d, ev.target)
        if msg is None:
            return
        icon, style = _DECISION_ICON.get(d.kind, ("•", "bold"))
        text = msg.text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        self._line((_clock(), "dim"), " ", (f"{icon} {d.target}", style), "  ", text)
        if d.kind is not DecisionKind.RESOLVED and d.reason:
            self._line(" " * 9, (d.reason, "dim"))
