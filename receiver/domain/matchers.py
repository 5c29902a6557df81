"""Alertmanager's classic label-matcher syntax, parsed and evaluated.

Follows prometheus/alertmanager pkg/labels (parse.go, matcher.go) rather than a
guess, so a matcher copied from an Alertmanager route or silence means the same here:

- ``name op value`` with op one of ``=``, ``!=``, ``=~``, ``!~``; the name is a
  Prometheus label name; whitespace around each token is dropped;
- the value may be double-quoted, with the OpenMetrics escapes ``\\"``, ``\\n`` and
  ``\\\\`` (any other backslash is literal); an unescaped quote inside it is an error;
  an empty unquoted value is an error (write ``""`` to match the empty string);
- a list is split on commas outside quotes; one leading ``{`` and one trailing ``}``
  are optional; a trailing comma is allowed;
- regexes are fully anchored (``^(?:v)$``) and a missing label matches as ``""``.

One deliberate difference: regexes are compiled by Python's ``re``, not Go's RE2, so
RE2-only syntax such as ``[[:alpha:]]`` is rejected with a clear error instead of being
silently read another way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

Op = Literal["=", "!=", "=~", "!~"]

# parse.go: `^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*((?s).*?)\s*$`. Go's \s is
# ASCII whitespace and its $ (without (?m)) is the very end, hence \Z, not $.
_WS = r"[\t\n\f\r ]*"
_MATCHER_RE = re.compile(rf"{_WS}([a-zA-Z_:][a-zA-Z0-9_:]*){_WS}(=~|=|!=|!~){_WS}((?s:.*?)){_WS}\Z")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; regex matchers carry their compiled, fully anchored pattern."""

    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"unknown matcher operator {self.op!r}: use =, !=, =~ or !~")
        if self.op in ("=~", "!~"):
            try:
                compiled = re.compile(f"(?:{self.value})")
            except re.error as e:
                raise ValueError(
                    f"bad regex in matcher {self.name}{self.op}{_quote(self.value)}: {e}"
                ) from e
            object.__setattr__(self, "_regex", compiled)

    @property
    def pattern(self) -> str:
        """The anchored regex as Alertmanager compiles it (regex matchers only)."""
        return f"^(?:{self.value})$"

    def matches_value(self, value: str) -> bool:
        """Does this matcher accept a label value?"""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(value) is not None
        return hit if self.op == "=~" else not hit

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Does this matcher accept a label set? A missing label counts as ""."""
        return self.matches_value(labels.get(self.name, ""))

    def __str__(self) -> str:
        return f"{self.name}{self.op}{_quote(self.value)}"


def _quote(value: str) -> str:
    """Quote a value as Alertmanager prints it (openMetricsEscape)."""
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return f'"{escaped}"'


def equality_selects(matchers: Iterable[Matcher]) -> bool:
    """True when some matcher is ``name="value"`` with a non-empty value.

    Only such a matcher narrows an alert set to a known label value; ``!=``, regexes and
    ``name=""`` all match an open-ended set (``{}`` matches every alert).
    """
    return any(m.op == "=" and m.value != "" for m in matchers)


def suspicious(matcher: Matcher) -> str | None:
    """Why a matcher probably does not mean what was written, or None.

    ``alertname==HighErrorRate`` parses (as in Alertmanager 0.25) as the value
    ``=HighErrorRate``; a value starting with ``=`` or ``~`` is almost always such a typo.
    """
    if matcher.value[:1] in ("=", "~"):
        if matcher.op == "=" and matcher.value[:1] == "~":
            meant = f"{matcher.name}=~{_quote(matcher.value[1:])}"
        else:
            meant = f"{matcher.name}{matcher.op}{_quote(matcher.value[1:])}"
        return (
            f"matcher {matcher} has a value starting with {matcher.value[:1]!r}; "
            f"it matches that literal text (did you mean {meant}?)"
        )
    return None


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher accepts the labels (an empty list accepts everything)."""
    return all(m.matches(labels) for m in matchers)


def format_matchers(matchers: Iterable[Matcher]) -> str:
    """Render matchers back into the ``{a="b", c=~"d"}`` form, for humans."""
    return "{" + ", ".join(str(m) for m in matchers) + "}"


def _split(text: str) -> list[str]:
    """Split on commas outside double quotes, exactly as ParseMatchers does."""
    tokens: list[str] = []
    token: list[str] = []
    inside_quotes = False
    escaped = False
    for ch in text:
        if ch == ",":
            if not inside_quotes:
                tokens.append("".join(token))
                token = []
                continue
            # A comma inside quotes leaves the escape state alone, as in Go.
        elif ch == '"':
            if not escaped:
                inside_quotes = not inside_quotes
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(ch)
    last = "".join(token).strip()
    if last:
        tokens.append(last)
    return tokens


def parse_matcher(text: str) -> Matcher:
    """Parse one ``name op value`` matcher; ValueError says what is wrong."""
    m = _MATCHER_RE.match(text)
    if m is None:
        raise ValueError(
            f"bad matcher format: {text!r} (expected name=value, name!=value, "
            'name=~"regex" or name!~"regex", with a label name like service or alertname)'
        )
    name, op, raw = m.group(1), m.group(2), m.group(3)
    # Debian's Alertmanager 0.25 (amtool check-config) reads `job=` in a config as job="";
    # newer parse tables reject it, but the running Alertmanager is the reference here.
    expect_trailing_quote = False
    if raw[:1] == '"':
        raw = raw[1:]
        expect_trailing_quote = True
    out: list[str] = []
    escaped = False
    last = len(raw) - 1
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            if ch == "n":
                out.append("\n")
            elif ch in ('"', "\\"):
                out.append(ch)
            else:  # a spurious escape: the backslash is literal
                out.append("\\" + ch)
            continue
        if ch == "\\":
            if i < last:
                escaped = True
                continue
            out.append("\\")  # a backslash as the last character is literal
        elif ch == '"':
            if not expect_trailing_quote or i < last:
                raise ValueError(
                    f"matcher value contains unescaped double quote: {m.group(3)!r} "
                    f'(escape it as \\" or quote the whole value)'
                )
            expect_trailing_quote = False
        else:
            out.append(ch)
    if expect_trailing_quote:
        raise ValueError(
            f"matcher value contains unescaped double quote: {m.group(3)!r} "
            "(missing closing quote?)"
        )
    return Matcher(name, op, "".join(out))  # type: ignore[arg-type]


@lru_cache(maxsize=1024)
def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """Parse a comma-separated list like ``{a="b", c=~"d"}``; cached, so call it freely.

    Raises ValueError naming the bad matcher and why.
    """
    body = text.removeprefix("{").removesuffix("}")
    return tuple(parse_matcher(token) for token in _split(body))
