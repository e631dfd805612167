"""CLI errors are one clear line plus the --debug hint; a typo'd profile key lists the allowed keys."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from campaign_pipeline.cli import DEBUG_HINT, main
from campaign_pipeline.profile import ProfileError, load_profile


def write_profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


def test_a_typo_in_a_profile_key_suggests_the_closest_and_lists_the_allowed_ones(tmp_path):
    path = write_profile(tmp_path, "sync:\n  preveiw_only: true\nmodes: campaign\n")
    try:
        load_profile(path)
    except ProfileError as exc:
        message = str(exc)
    else:
        raise AssertionError("a typo'd key must not load")
    assert "sync.preveiw_only: unknown setting; did you mean 'preview_only'?" in message
    assert "allowed: bulk_threshold, api_call_budget" in message
    assert "modes: unknown setting; did you mean 'mode'? allowed: mode, mailchimp, matching" in message


def test_an_unknown_key_with_no_close_match_still_lists_what_is_allowed(tmp_path):
    path = write_profile(tmp_path, "mailchimp:\n  zzz: 1\n")
    try:
        load_profile(path)
    except ProfileError as exc:
        assert "mailchimp.zzz: unknown setting; allowed: list_id, attribution_window_days" in str(exc)
    else:
        raise AssertionError("an unknown key must not load")


def test_a_failing_command_prints_one_line_and_the_debug_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_PIPELINE_PROFILE", str(write_profile(tmp_path, "sync:\n  preveiw_only: true\n")))
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1
    output = result.output.strip()
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("Error: sync profile") and "did you mean 'preview_only'" in output
    assert output.endswith(DEBUG_HINT)


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_PIPELINE_PROFILE", str(write_profile(tmp_path, "mode: everything\n")))
    result = CliRunner().invoke(main, ["--debug", "demo"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ProfileError)
    assert "mode: Input should be" in str(result.exception)
