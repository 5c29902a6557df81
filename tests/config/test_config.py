"""config.yaml is validated strictly, and check-config says what a file would do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from receiver.cli import main
from receiver.domain.settings import ConfigError, StepOrder, load_config, parse_config

ROOT = Path(__file__).parent.parent.parent
SHIPPED = ROOT / "config.yaml"

MINIMAL = """
rules:
  - name: error-rate
    matchers: ['alertname="HighErrorRate"']
    threshold: 0.05
    unit: ratio
targets:
  - name: finance-service
    namespace: finance
    matchers: ['service="finance-service"']
    stable: finance-service-v1
    canary: finance-service-v2
    replicas: 5
"""


def errors_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml")
    return str(info.value)


def test_the_shipped_config_is_the_finance_service_example() -> None:
    config = load_config(SHIPPED)
    assert [r.name for r in config.rules] == [
        "error-rate",
        "latency-p95",
        "cpu",
        "memory",
        "database-connections",
        "business-flow",
    ]
    # The rollout guide: week 1 rolls back at its monitoring levels, later weeks at the immediate ones.
    thresholds = {r.name: (r.thresholds.root if r.thresholds else r.threshold, r.unit) for r in config.rules}
    assert thresholds["error-rate"] == ({"week-1": 0.01, "default": 0.05}, "ratio")
    assert thresholds["latency-p95"] == ({"week-1": 0.3, "default": 1.0}, "seconds")
    assert thresholds["cpu"] == ({"week-1": 0.7, "default": 0.9}, "ratio")
    assert thresholds["memory"] == ({"week-1": 0.8, "default": 1.0}, "ratio")
    assert thresholds["database-connections"] == (None, "none")
    (target,) = config.targets
    assert (target.name, target.namespace, target.stable, target.canary, target.replicas) == (
        "finance-service",
        "finance",
        "finance-service-v1",
        "finance-service-v2",
        5,
    )
    assert config.settings.step_order is StepOrder.AUTO
    assert config.slack.mode == "console"
    assert config.auth.bearer_token_env == "RECEIVER_WEBHOOK_TOKEN"
    assert not config.settings.dry_run and config.settings.enabled


def test_a_minimal_config_is_enough() -> None:
    assert parse_config(MINIMAL).targets[0].replicas == 5


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (MINIMAL + "settings:\n  dry-run: true\n", "settings.dry-run: unknown key"),
        (MINIMAL.replace("replicas: 5", "replicas: 5\n    stabel: x"), "targets.0.stabel: unknown key"),
        (MINIMAL + "slak: {}\n", "slak: unknown key"),
    ],
)
def test_an_unknown_key_is_an_error_naming_its_path(text: str, path: str) -> None:
    assert path in errors_of(text)


def test_the_error_names_the_file() -> None:
    assert errors_of(MINIMAL + "x: 1\n").startswith("test.yaml: 1 error(s)")


def test_duplicate_rule_names_are_rejected() -> None:
    text = MINIMAL.replace(
        "targets:",
        "  - {name: error-rate, matchers: ['alertname=\"Other\"']}\ntargets:",
    )
    assert "duplicate rule names: error-rate" in errors_of(text)


def test_duplicate_target_names_are_rejected() -> None:
    target = MINIMAL.split("targets:\n", 1)[1]
    assert "duplicate target names: finance-service" in errors_of(MINIMAL + target)


def test_a_bad_matcher_is_rejected_with_the_reason_and_path() -> None:
    err = errors_of(MINIMAL.replace("""'alertname="HighErrorRate"'""", """'alertname="HighErrorRate'"""))
    assert "rules.0.matchers" in err
    assert "unescaped double quote" in err


def test_a_bad_regex_is_rejected() -> None:
    err = errors_of(MINIMAL.replace("""'service="finance-service"'""", """'service=~"finance-(service"'"""))
    assert "targets.0.matchers" in err
    assert "bad regex" in err


def test_a_mute_without_a_time_zone_is_rejected() -> None:
    text = MINIMAL + "settings:\n  mute: {by: jane, reason: migration, until: '2026-11-27T18:00:00'}\n"
    assert "settings.mute.until" in errors_of(text)
    assert "time zone" in errors_of(text)


def test_a_mute_with_a_zone_is_accepted() -> None:
    text = MINIMAL + "settings:\n  mute: {by: jane, reason: migration, until: '2026-11-27T18:00:00Z'}\n"
    assert parse_config(text).settings.mute is not None


def test_stable_and_canary_must_differ() -> None:
    err = errors_of(MINIMAL.replace("canary: finance-service-v2", "canary: finance-service-v1"))
    assert "stable and canary must be different" in err


def test_a_target_name_must_be_a_kubernetes_name() -> None:
    assert "targets.0.name" in errors_of(MINIMAL.replace("name: finance-service\n", "name: Finance_Service\n"))


def test_yaml_that_is_not_a_mapping_is_rejected() -> None:
    assert "top level must be a mapping" in errors_of("- a\n- b\n")


def test_invalid_yaml_is_rejected() -> None:
    assert "not valid YAML" in errors_of("rules: [\n")


# --- check-config ---------------------------------------------------------------------


def test_check_config_accepts_the_shipped_file_and_spells_it_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-config", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert f"Checking '{SHIPPED}'  SUCCESS" in out
    assert "6 rule(s)" in out
    assert '1. error-rate: {alertname="HighErrorRate"' in out
    assert "week 1 1 %; week 2 5 %; week 3 5 %; week 4 5 %; between or outside phases 5 %" in out
    assert "week 1 300 ms; week 2 1000 ms" in out
    assert "week 1 = canary 1 of 5, week 2 = canary 3 of 5, week 3 = canary 4 of 5" in out
    assert "scale finance-service-v2 to 0, finance-service-v1 to 5" in out
    assert "auto: canary first when finance-service-v1 has >= 3 of 5 pods Ready" in out
    assert "mode: LIVE" in out
    assert "RECEIVER_WEBHOOK_TOKEN" in out


def test_check_config_shows_dry_run_and_active_mutes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        MINIMAL.replace("replicas: 5", "replicas: 5\n    mute: {by: sam, reason: digging in}")
        + "settings: {dry_run: true, step_order: stable-first}\n"
    )
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "mode: DRY RUN" in out
    assert "mute:     ACTIVE, by sam, until removed (digging in)" in out
    assert "stable-first (fixed)" in out


def test_check_config_fails_with_the_error_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL + "settings:\n  dry-run: true\n")
    assert main(["check-config", str(SHIPPED), str(path)]) == 2
    captured = capsys.readouterr()
    assert f"Checking '{path}'  FAILED:" in captured.out
    assert "settings.dry-run: unknown key" in captured.out
    assert "failed to validate 1 file(s)" in captured.err


def test_check_config_reports_a_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "/nonexistent/config.yaml"]) == 2
    assert "cannot read" in capsys.readouterr().out


def test_check_config_never_prints_a_token(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_WEBHOOK_TOKEN", "s3cret-token-value")
    assert main(["check-config", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "RECEIVER_WEBHOOK_TOKEN (set)" in out
    assert "s3cret" not in out


def test_the_receiver_command_runs_check_config() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "receiver", "check-config", str(SHIPPED)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "SUCCESS" in done.stdout


# --- dangerous configuration is refused; likely typos are named ------------------------


@pytest.mark.parametrize(
    "matchers",
    [
        "[]",
        """['service!="billing-service"']""",
        """['service=~"finance-.*"']""",
        """['service=""']""",
    ],
)
def test_a_target_without_an_equality_matcher_is_refused_naming_the_target(matchers: str) -> None:
    text = MINIMAL.replace("""matchers: ['service="finance-service"']""", f"matchers: {matchers}")
    err = errors_of(text)
    assert "targets.0: Value error, target 'finance-service' must select by at least one equality matcher" in err


def test_a_rule_without_an_equality_matcher_is_refused_naming_the_rule() -> None:
    err = errors_of(MINIMAL.replace("""matchers: ['alertname="HighErrorRate"']""", """matchers: ['severity=~".+"']"""))
    assert "rules.0: Value error, rule 'error-rate' must select by at least one equality matcher" in err


def test_check_config_refuses_a_catch_all_target_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL.replace("""matchers: ['service="finance-service"']""", "matchers: []"))
    assert main(["check-config", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"Checking '{path}'  FAILED:" in out
    assert "target 'finance-service' must select by at least one equality matcher" in out
    assert "alerts matching {}" not in out


@pytest.mark.parametrize("path", [SHIPPED, ROOT / "deploy" / "config.yaml"])
def test_the_shipped_configs_still_validate_without_warnings(path: Path) -> None:
    assert load_config(path).warnings() == []


def test_the_demo_config_still_validates() -> None:
    from sim.demo import shipped_config

    assert load_config(shipped_config()).targets


def test_a_doubled_equals_sign_is_warned_about_by_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL.replace("""['alertname="HighErrorRate"']""", "['alertname==HighErrorRate']"))
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "WARNING: rules.0 (error-rate): matcher alertname=\"=HighErrorRate\" has a value starting with '='; "
        'it matches that literal text (did you mean alertname="HighErrorRate"?)'
    ) in out


def test_a_value_starting_with_a_tilde_is_warned_about_and_logged_when_the_service_loads_it(
    tmp_path: Path,
) -> None:
    from structlog.testing import capture_logs

    from receiver.config.store import ConfigStore

    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL.replace("""'service="finance-service"'""", "'service=\"finance-service\"', 'env= ~prod'"))
    with capture_logs() as logs:
        store = ConfigStore(path, env={"RECEIVER_WEBHOOK_TOKEN": "t"})
    expected = (
        "targets.0 (finance-service): matcher env=\"~prod\" has a value starting with '~'; "
        'it matches that literal text (did you mean env=~"prod"?)'
    )
    assert store.config.warnings() == [expected]
    warned = [e for e in logs if e["event"] == "config_warning"]
    assert [(e["log_level"], e["warning"], e["path"]) for e in warned] == [("warning", expected, str(path))]


@pytest.mark.parametrize(
    ("section", "typo", "meant"),
    [("settings", "dryrun: true", "dry_run"), ("slack", "defualt_channel: '#x'", "default_channel")],
)
def test_an_unknown_key_near_a_known_one_says_did_you_mean(section: str, typo: str, meant: str) -> None:
    err = errors_of(MINIMAL + f"{section}:\n  {typo}\n")
    assert f"{section}.{typo.split(':')[0]}: unknown key; did you mean {meant}?" in err


def test_a_near_miss_key_inside_a_target_says_did_you_mean() -> None:
    err = errors_of(MINIMAL.replace("replicas: 5", "replicas: 5\n    runbok_url: https://x"))
    assert "targets.0.runbok_url: unknown key; did you mean runbook_url?" in err


def test_an_unknown_key_far_from_any_stays_a_plain_unknown_key() -> None:
    err = errors_of(MINIMAL + "settings:\n  colour: blue\n")
    assert err.splitlines()[-1] == "  settings.colour: unknown key"
