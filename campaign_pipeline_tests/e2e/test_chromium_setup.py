"""The browser tests bring their own Chromium: installed when missing (as root), a clear failure otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign_pipeline_tests.e2e import conftest


def test_an_existing_chromium_is_used_as_is(tmp_path: Path):
    browser = tmp_path / "chromium"
    browser.write_text("")
    assert conftest.ensure_chromium(browser) == browser


def test_a_missing_chromium_without_root_fails_with_the_command_to_run(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(conftest.os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception) as failure:
        conftest.ensure_chromium(tmp_path / "chromium")
    message = str(failure.value)
    assert "is missing" in message and "apt-get install chromium chromium-driver" in message


def test_the_install_is_debians_packages_and_waits_for_a_busy_apt_lock():
    update, install = conftest.chromium_install_commands()
    assert update[0] == "apt-get" and "update" in update
    assert install[-2:] == ["chromium", "chromium-driver"] and "-y" in install
    assert all(any(part.startswith("DPkg::Lock::Timeout=") for part in command) for command in (update, install))
