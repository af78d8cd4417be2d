"""Settings: defaults with no file, TOML file, environment, and clear errors."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest

from backend.cli import main
from backend.settings import SettingsError, load_settings


def test_defaults_work_with_no_file(tmp_path, monkeypatch):
    s = load_settings()
    assert s.config_file is None
    assert s.db_url.startswith("sqlite+aiosqlite:///") and s.db_url.endswith("data/ledger.db")
    assert s.log_path.name == "tokenmill.log"
    assert s.sqlite_synchronous == "NORMAL"


def test_admin_token_is_created_once_with_mode_0600():
    s = load_settings()
    token = s.ensure_admin_token()
    assert token.startswith("tma-") and len(token) > 30
    assert stat.S_IMODE(s.admin_token_file.stat().st_mode) == 0o600
    assert load_settings().ensure_admin_token() == token


def test_toml_file_and_environment(tmp_path, monkeypatch):
    cfg = tmp_path / "tm.toml"
    cfg.write_text('admin_port = 9000\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("TOKENMILL_CONFIG", str(cfg))
    monkeypatch.setenv("TOKENMILL_LOG_LEVEL", "ERROR")
    s = load_settings()
    assert s.config_file == cfg
    assert s.admin_port == 9000
    assert s.log_level == "ERROR"  # the environment wins over the file


def test_config_in_data_dir_is_found(monkeypatch, tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "config.toml").write_text("admin_port = 9100\n")
    monkeypatch.setenv("TOKENMILL_DATA_DIR", str(data))
    assert load_settings().admin_port == 9100


@pytest.mark.parametrize(("content", "expected"), [
    ("admin_port = [", "not valid TOML"),
    ('admin_port = "many"', "field admin_port"),
    ("admin_prot = 1", "field admin_prot"),
    ('sqlite_synchronous = "OFF"', "field sqlite_synchronous"),
    ('[autoscaler]\nmin_expected_profit_per_hour_usd = "-0.10"', "min_expected_profit_per_hour_usd: '-0.10' must be"),
    ("[autoscaler]\nmin_expected_profit_per_hour_usd = 0.1", "min_expected_profit_per_hour_usd"),
])
def test_bad_config_file_names_file_and_field(tmp_path, monkeypatch, content, expected):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content + "\n")
    monkeypatch.setenv("TOKENMILL_CONFIG", str(cfg))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(cfg) in str(info.value)
    assert expected in str(info.value)


def test_missing_explicit_config_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKENMILL_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match="no such file"):
        load_settings()


def test_secrets_are_not_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("TOKENMILL_ADMIN_TOKEN", "tma-supersecretvalue")
    monkeypatch.setenv("TOKENMILL_DATABASE_URL", "postgresql://u:hunter2@db/x")
    s = load_settings()
    assert "supersecret" not in repr(s) and "hunter2" not in repr(s)


def test_info_prints_what_is_in_use_and_masks_the_password(monkeypatch, capsys):
    monkeypatch.setenv("TOKENMILL_DATABASE_URL", "postgresql://u:hunter2@db.example/ledger")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for label in ("version", "config file", "database", "log file", "data dir"):
        assert label in out
    assert "hunter2" not in out and "postgresql+asyncpg://u:***@db.example/ledger" not in out
    assert "u:***@db.example/ledger" in out
    assert "13 models" in out


def test_info_with_a_bad_setting_exits_2_and_says_why(monkeypatch):
    env = {"TOKENMILL_ADMIN_PORT": "abc"}
    import os
    proc = subprocess.run([sys.executable, "-m", "backend.cli", "info"], capture_output=True, text=True,
                          env={**os.environ, **env})
    assert proc.returncode == 2
    assert "admin_port" in proc.stderr and "TOKENMILL_ADMIN_PORT" in proc.stderr
