"""The alert's expression from its generatorURL, and the same expression per version."""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest

from receiver.domain.promql import (
    GeneratorURLError,
    PromQLError,
    Thresholded,
    expr_from_generator_url,
    for_version,
    split_threshold,
)

ERROR_RATE = (
    'sum by (service, version) (rate(http_requests_total{code=~"5.."}[2m]))\n'
    "  / sum by (service, version) (rate(http_requests_total[2m]))\n> 0.05"
)


def generator_url(expr: str) -> str:
    """As Prometheus builds it: externalURL + /graph?g0.expr=<QueryEscape(expr)>&g0.tab=1."""
    return f"http://prometheus.example:9090/graph?g0.expr={quote_plus(expr)}&g0.tab=1"


def test_the_rule_expression_comes_back_from_prometheus_graph_link() -> None:
    assert expr_from_generator_url(generator_url(ERROR_RATE)) == ERROR_RATE.strip()


def test_a_plus_sign_in_the_expression_survives_the_url_encoding() -> None:
    expr = 'a{x="1+1"} + b > 2'
    assert expr_from_generator_url(generator_url(expr)) == expr


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("", "has no generatorURL"),
        ("   ", "has no generatorURL"),
        ("not a url", "not an http"),
        ("http://[::1/graph?g0.expr=up", "not a URL"),
        ("http://vmalert.example/vmalert/alert?group_id=1&alert_id=2", "no g0.expr parameter"),
        ("http://prometheus.example:9090/graph?g0.expr=&g0.tab=1", "empty g0.expr"),
        ("http://prometheus.example:9090/graph?g0.expr=up&g0.expr=down", "2 g0.expr parameters"),
    ],
)
def test_an_unparseable_generator_url_says_what_is_missing(url: str, error: str) -> None:
    with pytest.raises(GeneratorURLError, match=error):
        expr_from_generator_url(url)


def test_the_rules_comparison_is_split_off_so_the_value_itself_can_be_read() -> None:
    split = split_threshold(ERROR_RATE)
    assert split == Thresholded(ERROR_RATE.rsplit(">", 1)[0].strip(), ">", 0.05)


@pytest.mark.parametrize(
    "expr",
    [
        "a > bool 0.05",  # bool turns the comparison into 0/1
        "a > b",  # no plain number on the right
        "0.05 < a",  # number on the left
        "(a > 0.05) and on(version) (b <= 0.35)",  # set operator binds looser
        "a > 1 > 2",  # two comparisons
        "a",  # none
        'a{code!="200"}',  # != inside a selector is not a comparison
    ],
)
def test_only_the_simple_comparison_shape_is_split(expr: str) -> None:
    assert split_threshold(expr) is None


def test_comparisons_inside_strings_brackets_and_comments_are_not_the_rules_threshold() -> None:
    expr = 'max(label_replace(a, "x", ">", "", "")) # > 3\n > 0.9'
    split = split_threshold(expr)
    assert split is not None
    assert (split.op, split.threshold) == (">", 0.9)
    assert split.value.startswith("max(")


def test_an_expression_grouped_by_version_is_filtered_to_one_version() -> None:
    value = split_threshold(ERROR_RATE)
    assert value is not None
    assert for_version(value.value, "v1") == (
        f'({value.value}) and on(version) label_replace(vector(1), "version", "v1", "", "")'
    )


def test_a_version_pinned_in_the_selectors_is_rewritten_to_the_other_version() -> None:
    expr = (
        'sum(rate(http_requests_total{code=~"5..", version="v2"}[2m]))'
        " / sum(rate(http_requests_total{version='v2',service=\"finance-service\"}[2m]))"
    )
    assert for_version(expr, "v1") == (
        'sum(rate(http_requests_total{code=~"5..", version="v1"}[2m]))'
        ' / sum(rate(http_requests_total{version="v1",service="finance-service"}[2m]))'
    )


def test_a_version_value_cannot_break_out_of_its_string() -> None:
    out = for_version('up{version="v2"}', 'v1"} or vector(1) or up{x="')
    assert out == r'up{version="v1\"} or vector(1) or up{x=\""}'


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ('up{version=~"v.*"}', "matches version with =~"),
        ('up{version!="v1"}', "matches version with !="),
        ('up{"version"="v2"}', "cannot read the label matchers"),
        ('up{version="v2}', "unterminated string"),
        ("sum(up", "unclosed bracket"),
        ("sum(up]", "unbalanced"),
    ],
)
def test_an_expression_that_cannot_safely_be_rewritten_is_refused(expr: str, error: str) -> None:
    with pytest.raises(PromQLError, match=error):
        for_version(expr, "v1")


def test_a_label_name_that_is_not_one_is_refused() -> None:
    with pytest.raises(PromQLError, match="not a label name"):
        for_version("up", "v1", label="version) or (up")
