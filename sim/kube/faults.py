"""Fault injection a test switches on and off: failures with a status code for a share
of requests, added latency, dropped connections, cut watches and forced 410s."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field


@dataclass
class FailRule:
    verb: str | None
    resource: str | None  # "deployments", "deployments/scale", ...
    namespace: str | None
    name: str | None
    status: int
    times: int | None  # None = forever
    share: float | None  # probability per matching request
    retry_after: int
    plain_429: bool = True
    body: bytes | None = None  # answer with this body as-is (e.g. a 200 that is not JSON)

    def matches(self, verb: str, resource: str, namespace: str, name: str) -> bool:
        return (
            (self.verb is None or self.verb == verb)
            and (self.resource is None or self.resource == resource)
            and (self.namespace is None or self.namespace == namespace)
            and (self.name is None or self.name == name)
        )


@dataclass
class LatencyRule:
    seconds: float
    verb: str | None
    resource: str | None

    def matches(self, verb: str, resource: str) -> bool:
        return (self.verb is None or self.verb == verb) and (self.resource is None or self.resource == resource)


@dataclass
class DropRule:
    verb: str | None
    resource: str | None
    times: int | None
    after: bool = False  # apply the request, then close the connection without answering


@dataclass
class CutRule:
    after_events: int | None
    after_seconds: float | None
    resource: str | None
    times: int | None


@dataclass
class HoldRule:
    resource: str | None
    released: asyncio.Event = field(default_factory=asyncio.Event)


class Faults:
    """Rules consulted on every request; `times` counts down and the rule retires."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self.clear()

    def clear(self) -> None:
        self.failures: list[FailRule] = []
        self.latencies: list[LatencyRule] = []
        self.drops: list[DropRule] = []
        self.cuts: list[CutRule] = []
        self.expire_watches = 0
        for hold in getattr(self, "holds", []):
            hold.released.set()
        self.holds: list[HoldRule] = []

    def fail(
        self,
        verb: str | None = None,
        resource: str | None = None,
        status: int = 503,
        times: int | None = None,
        share: float | None = None,
        retry_after: int = 1,
        namespace: str | None = None,
        name: str | None = None,
        plain_429: bool = True,
        body: bytes | None = None,
    ) -> FailRule:
        """Answer matching requests with `status` (429 as API Priority and Fairness does:
        plain text and Retry-After, unless plain_429=False gives the Status form). With
        `body`, answer `status` with exactly that body (a garbling proxy, a broken server)."""
        rule = FailRule(verb, resource, namespace, name, status, times, share, retry_after, plain_429, body)
        self.failures.append(rule)
        return rule

    def latency(self, seconds: float, verb: str | None = None, resource: str | None = None) -> LatencyRule:
        rule = LatencyRule(seconds, verb, resource)
        self.latencies.append(rule)
        return rule

    def drop_connections(self, times: int | None = 1, verb: str | None = None, resource: str | None = None) -> DropRule:
        """Close the TCP connection without answering."""
        rule = DropRule(verb, resource, times)
        self.drops.append(rule)
        return rule

    def drop_responses(self, times: int | None = 1, verb: str | None = None,
                       resource: str | None = None) -> DropRule:
        """Apply the request, then close the connection without answering: the write
        lands but its client never learns (a proxy or node dying mid-answer)."""
        rule = DropRule(verb, resource, times, after=True)
        self.drops.append(rule)
        return rule

    def cut_watches(
        self,
        after_events: int | None = None,
        after_seconds: float | None = None,
        resource: str | None = None,
        times: int | None = None,
    ) -> CutRule:
        """Break matching watch streams (connection closed mid-stream)."""
        rule = CutRule(after_events, after_seconds, resource, times)
        self.cuts.append(rule)
        return rule

    def hold_watches(self, resource: str | None = None) -> HoldRule:
        """Hold back the events of open and new watches (a lagging watch cache or a slow
        link) until release_watches(); the changes themselves happen at once."""
        rule = HoldRule(resource)
        self.holds.append(rule)
        return rule

    def release_watches(self) -> None:
        """Deliver the held watch events, in order."""
        for rule in self.holds:
            rule.released.set()
        self.holds.clear()

    async def wait_released(self, resource: str) -> None:
        """Consulted before each watch event: returns once no hold covers ``resource``."""
        for rule in list(self.holds):
            if rule.resource is None or rule.resource == resource:
                await rule.released.wait()

    def expire_next_watch(self, count: int = 1) -> None:
        """The next watch(es) from a resourceVersion get an ERROR 410 Expired event."""
        self.expire_watches += count

    # consulted by the server -------------------------------------------------
    def _take(self, rules: list, rule: object) -> None:  # type: ignore[type-arg]
        times = getattr(rule, "times", None)
        if times is not None:
            times -= 1
            rule.times = times  # type: ignore[attr-defined]
            if times <= 0:
                rules.remove(rule)

    def failure_for(self, verb: str, resource: str, namespace: str, name: str) -> FailRule | None:
        for rule in list(self.failures):
            if not rule.matches(verb, resource, namespace, name):
                continue
            if rule.share is not None and self._rng.random() >= rule.share:
                continue
            self._take(self.failures, rule)
            return rule
        return None

    def delay_for(self, verb: str, resource: str) -> float:
        return sum(r.seconds for r in self.latencies if r.matches(verb, resource))

    def should_drop(self, verb: str, resource: str, *, after: bool = False) -> bool:
        for rule in list(self.drops):
            if rule.after is after and (rule.verb is None or rule.verb == verb) \
                    and (rule.resource is None or rule.resource == resource):
                self._take(self.drops, rule)
                return True
        return False

    def cut_for(self, resource: str) -> CutRule | None:
        for rule in list(self.cuts):
            if rule.resource is None or rule.resource == resource:
                self._take(self.cuts, rule)
                return rule
        return None

    def take_expire(self) -> bool:
        if self.expire_watches > 0:
            self.expire_watches -= 1
            return True
        return False
