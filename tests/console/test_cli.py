"""`tokenmill`'s own command line: bare `tokenmill` and its options open the console, `--help`
says so, attaching on the same machine finds the admin token, one-off commands stay out of the
server's log and out of a closed pipe's way."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from console import cli
from tests.router_harness import router_settings, running_router


def tokenmill(*args: str, data_dir: Path, shell_tail: str = "") -> subprocess.CompletedProcess[str]:
    """The real command, as a process (its logging set-up must not leak into this one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENMILL_")}
    env["TOKENMILL_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-m", "console.cli", *args]
    if shell_tail:
        line = " ".join(f"'{c}'" for c in command) + " | " + shell_tail
        return subprocess.run(["bash", "-o", "pipefail", "-c", line], env=env, capture_output=True, text=True,
                              timeout=120)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_help_says_bare_tokenmill_opens_the_console(tmp_path):
    done = tokenmill("--help", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "With no command, `tokenmill` opens the console" in done.stdout
    for option in ("--attach URL", "--readonly", "--refresh S", "--keep-backend"):
        assert option in done.stdout


async def test_console_options_alone_attach_with_the_data_dirs_token(tmp_path, monkeypatch):
    """`tokenmill --attach=URL --refresh 5` on the backend's machine: the token is read from the data
    dir (nothing in the environment), and the console opens on that backend."""
    monkeypatch.delenv("TOKENMILL_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("TOKENMILL_DATA_DIR", str(tmp_path))
    opened = {}
    monkeypatch.setattr("console.__main__.run_console",
                        lambda url, token, **kw: opened.update(url=url, token=token, **kw))
    async with running_router(router_settings(tmp_path)) as router:
        assert (tmp_path / "admin_token").read_text().strip() == router.services.admin_token
        code = await asyncio.to_thread(cli.main, [f"--attach={router.url}", "--refresh", "5", "--readonly"])
    assert code == 0
    assert opened == {"url": router.url, "token": router.services.admin_token, "readonly": True,
                      "simulated": False, "refresh_s": 5.0}


def test_attach_without_any_token_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TOKENMILL_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("TOKENMILL_DATA_DIR", str(tmp_path))
    assert cli.main(["--attach", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "TOKENMILL_ADMIN_TOKEN" in err and str(tmp_path / "admin_token") in err
    assert not (tmp_path / "admin_token").exists()  # attaching never invents a token


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_refresh_must_be_a_positive_number(value, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--refresh", value])
    assert "--refresh" in capsys.readouterr().err


def test_openapi_into_a_closed_pipe_exits_quietly(tmp_path):
    done = tokenmill("openapi", data_dir=tmp_path, shell_tail="head -c 20")
    assert done.stdout.startswith("{")
    assert done.returncode == 0 and done.stderr == ""


def test_one_off_commands_never_write_the_servers_log(tmp_path):
    log = tmp_path / "logs" / "tokenmill.log"
    log.parent.mkdir()
    log.write_text("a running server's line\n")
    for args in (["info"], ["openapi"], ["db", "upgrade"]):  # alembic logs at INFO
        done = tokenmill(*args, data_dir=tmp_path)
        assert done.returncode == 0, done.stderr
    assert log.read_text() == "a running server's line\n"
    assert sorted(p.name for p in log.parent.iterdir()) == ["tokenmill.log"]
