"""The command line of `python -m console` (the app itself is covered by the pilot tests)."""

from __future__ import annotations

import pytest

from console import __main__ as cli


def test_needs_a_token(monkeypatch, capsys):
    monkeypatch.delenv("TOKENMILL_ADMIN_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        cli.main(["--url", "http://127.0.0.1:1"])
    assert "admin token" in capsys.readouterr().err


def test_passes_options_to_run_console(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "run_console", lambda url, token, **kw: seen.update(url=url, token=token, **kw))
    monkeypatch.setenv("TOKENMILL_ADMIN_TOKEN", "tma-env")
    cli.main(["--url", "http://h:1", "--readonly", "--simulated"])
    assert seen == {"url": "http://h:1", "token": "tma-env", "readonly": True, "simulated": True, "refresh_s": 2.0}
