"""Small, conservative PromQL text helpers: the alert's expression, per-version queries.

Alertmanager hands over an alert's rule expression only inside its generatorURL
(Prometheus' ``/graph?g0.expr=<url-encoded expr>&g0.tab=1``, the expression as
Prometheus prints it: one line, normalised spacing, not the rule file's text). To ask "is the stable
just as sick?" and "did the metric recover?" the receiver evaluates that expression
again, per ``version`` label, and needs its value rather than the rule's filtered
result (``... > 0.05`` drops every series below 0.05).

This is not a PromQL parser. It masks string literals and comments, tracks bracket
depth, and only acts when the text has a shape it fully understands; anything else is
refused with PromQLError (or, for ``split_threshold``, returns None) so a caller falls
back to the alert's own value instead of running a query that means something else.
Limitations are listed on each function.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit


class PromQLError(ValueError):
    """The text cannot be used (unparseable URL, unsupported expression shape)."""


class GeneratorURLError(PromQLError):
    """The alert's generatorURL carries no usable expression."""


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPERATORS = re.compile(r"\b(?:and|or|unless)\b")
_MATCHER = re.compile(
    r"""\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*(?:,|$)""",
    re.DOTALL,
)


def expr_from_generator_url(url: str) -> str:
    """The rule expression in an alert's generatorURL (``g0.expr``, URL-decoded).

    Raises GeneratorURLError saying what is missing, e.g. for an alert from a rule
    engine that links elsewhere (vmalert, Grafana), or an empty or garbled URL.
    """
    if not url or not url.strip():
        raise GeneratorURLError("the alert has no generatorURL")
    try:
        parts = urlsplit(url.strip())
    except ValueError as e:
        raise GeneratorURLError(f"generatorURL {url!r} is not a URL: {e}") from e
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GeneratorURLError(f"generatorURL {url!r} is not an http(s) URL")
    exprs = parse_qs(parts.query, keep_blank_values=True).get("g0.expr", [])
    if not exprs:
        raise GeneratorURLError(f"generatorURL {url!r} has no g0.expr parameter (not a Prometheus graph link)")
    if len(exprs) > 1:
        raise GeneratorURLError(f"generatorURL {url!r} has {len(exprs)} g0.expr parameters")
    if not exprs[0].strip():
        raise GeneratorURLError(f"generatorURL {url!r} has an empty g0.expr")
    return exprs[0].strip()


def quote(value: str) -> str:
    """A PromQL double-quoted string literal for ``value`` (Go escapes, JSON-compatible)."""
    return json.dumps(value, ensure_ascii=False)


def _mask(expr: str) -> str:
    """``expr`` with string contents and comments blanked (same length, same positions).

    Quotes stay so positions of literals are visible; unterminated strings and
    unbalanced brackets raise PromQLError.
    """
    out: list[str] = []
    closing = {"(": ")", "[": "]", "{": "}"}
    stack: list[str] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if c != "`" and expr[j] == "\\" else 1
            if j >= n:
                raise PromQLError(f"unterminated string starting at character {i + 1}")
            out.append(c + "_" * (j - i - 1) + c)
            i = j + 1
            continue
        if c == "#":
            j = expr.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
            continue
        if c in closing:
            stack.append(closing[c])
        elif c in ")]}" and (not stack or stack.pop() != c):
            raise PromQLError(f"unbalanced {c!r} at character {i + 1}")
        out.append(c)
        i += 1
    if stack:
        raise PromQLError(f"unclosed bracket: expected {stack[-1]!r}")
    return "".join(out)


def _top_level(masked: str) -> list[bool]:
    """For each position: is it outside every bracket?"""
    depth, flags = 0, []
    for c in masked:
        if c in ")]}":
            depth -= 1
        flags.append(depth == 0)
        if c in "([{":
            depth += 1
    return flags


@dataclass(frozen=True, slots=True)
class Thresholded:
    """An expression split at its final comparison: ``value`` ``op`` ``threshold``."""

    value: str
    op: str
    threshold: float


def split_threshold(expr: str) -> Thresholded | None:
    """``A > 0.05`` -> (``A``, ``>``, 0.05), so the receiver can read A's own value.

    Only the simple, common alert shape is split: exactly one comparison outside
    every bracket, a plain number on its right, no ``bool`` modifier, and no
    ``and``/``or``/``unless`` at the top level (they bind looser than comparisons, so
    the comparison would not be the last step). Anything else returns None: the
    caller then judges the alert's value, or uses a rule's own query.
    """
    masked = _mask(expr)
    top = _top_level(masked)
    if any(top[m.start()] for m in _SET_OPERATORS.finditer(masked)):
        return None
    found: list[tuple[int, str]] = []
    i = 0
    while i < len(masked):
        if top[i]:
            op = next((o for o in _COMPARISONS if masked.startswith(o, i)), None)
            if op is not None:
                found.append((i, op))
                i += len(op)
                continue
        i += 1
    if len(found) != 1:
        return None
    at, op = found[0]
    left, right = expr[:at].strip(), expr[at + len(op):].strip()
    if not left or not _NUMBER.fullmatch(right):
        return None
    return Thresholded(left, op, float(right))


def _selector_blocks(masked: str) -> list[tuple[int, int]]:
    """(start, end) of the inside of each ``{...}`` label-matcher block."""
    blocks, start = [], -1
    for i, c in enumerate(masked):
        if c == "{":
            start = i + 1
        elif c == "}" and start >= 0:
            blocks.append((start, i))
            start = -1
    return blocks


def for_version(expr: str, version: str, *, label: str = "version") -> str:
    """The same expression evaluated for one ``version`` label value (e.g. "v1").

    Two shapes, in this order:

    - The expression pins the version in its selectors (``{version="v2"}``): every
      ``version="..."`` matcher gets the new value, so a rule written for v2 computes
      the same thing for v1.
    - Otherwise its result is filtered: ``(expr) and on(version)
      label_replace(vector(1), "version", "v1", "", "")`` keeps the result series whose
      version label is v1. This needs the result to carry the label (``sum by
      (service, version)`` does); one that aggregates it away gives no series, which a
      caller must report as "no value for v1", never as "healthy".

    A version matcher other than ``=`` (``=~``, ``!=``, ``!~``) is refused: what it
    should become is a guess. Prometheus 3's quoted label names (``{"version"="v2"}``)
    are not recognised (Debian ships 2.42).
    """
    if not _LABEL_NAME.fullmatch(label):
        raise PromQLError(f"{label!r} is not a label name")
    masked = _mask(expr)
    edits: list[tuple[int, int, str]] = []
    for start, end in _selector_blocks(masked):
        inner = expr[start:end]
        pos = 0
        while pos < len(inner) and inner[pos:].strip():
            m = _MATCHER.match(inner, pos)
            if m is None:
                raise PromQLError(f"cannot read the label matchers {{{inner}}}")
            if m.group("name") == label:
                if m.group("op") != "=":
                    raise PromQLError(
                        f"the selector {{{inner.strip()}}} matches {label} with {m.group('op')}: "
                        f"only {label}=\"...\" can be rewritten to one version"
                    )
                edits.append((start + m.start("value"), start + m.end("value"), quote(version)))
            pos = m.end()
    if edits:
        out = expr
        for a, b, text in reversed(edits):
            out = out[:a] + text + out[b:]
        return out
    return f'({expr}) and on({label}) label_replace(vector(1), {quote(label)}, {quote(version)}, "", "")'
