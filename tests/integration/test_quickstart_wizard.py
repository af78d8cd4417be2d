"""`tokenmill quickstart` for real: in a terminal (tmux), every question answered by keys as a person
types them (wrong answers first), the estimate from the real simulator on screen, the config file
written; and a confirmed first host handed to a running backend's admin API by the real CLI."""

from __future__ import annotations

import argparse
import asyncio
import builtins
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from backend.cli import _run_command
from backend.cli_quickstart import add_command, quickstart
from backend.cli_quickstart.questions import Terminal
from backend.settings import load_settings
from tests.integration.provision.sshd import keygen
from tests.ports import free_port
from tests.router_harness import router_settings, running_router

SECRET = "rp_Quickstart-Secret-0042"
DEADLINE_S = 60


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-t", session, "-p", "-J", "-S", "-400")  # -J: wrapped lines joined


def screen_until(session: str, text: str, timeout_s: float = DEADLINE_S) -> str:
    deadline = time.monotonic() + timeout_s
    shown = ""
    while time.monotonic() < deadline:
        shown = screen(session)
        if text in shown:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; the screen was:\n{shown}")


def answer(session: str, prompt: str, keys: str, *, seen: int) -> int:
    """Wait for the `seen`+1-th appearance of `prompt` (a question asked again shows it again; a prompt
    is named so that nothing else on screen contains it), then type `keys` and Enter. Returns how many
    times the prompt has been shown."""
    deadline = time.monotonic() + DEADLINE_S
    while screen(session).count(prompt) <= seen:
        assert time.monotonic() < deadline, f"{prompt!r} was not asked; the screen was:\n{screen(session)}"
        time.sleep(0.1)
    if keys:
        tmux("send-keys", "-t", session, "-l", "--", keys)
    tmux("send-keys", "-t", session, "Enter")
    return seen + 1


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_wizard_in_a_real_terminal(tmp_path: Path):
    port = free_port()  # no backend there: provisioning is declined anyway, and nothing else is reached
    session = f"tm-quickstart-{port}"
    tokenmill = Path(sys.executable).with_name("tokenmill")
    tmux("new-session", "-d", "-s", session, "-x", "110", "-y", "50",
         f"TOKENMILL_DATA_DIR={tmp_path} TOKENMILL_ADMIN_PORT={port} {tokenmill} quickstart --days 0.5; "
         "echo EXITED-$?; sleep 60")
    try:
        steps = [
            ("Models to sell (ids", "llama-3.1-8b-instruct, gpt-5"),
            ("Models to sell (ids", "llama-3.1-8b-instruct,phi-4"),
            ("GPU sources (", "runpod, aws"), ("GPU sources (", "runpod,ssh"),
            ("RunPod API key", ""), ("RunPod API key", SECRET),
            ("Your machine", "no such host!"), ("Your machine", "ubuntu@gpu1.example.com:2222"),
            ("Its GPU", "rtx9999"), ("Its GPU", "rtx3090"),
            ("Starting fleet [", "rtx3090:moon:1"),
            ("Starting fleet [", "rtx3090:owned:1:llama-3.1-8b-instruct,rtx4090:runpod:1:phi-4"),
            ("Price policy [", "cheap"), ("Price policy [", "pinned"),
            ("Pinned prompt price", "abc"), ("Pinned prompt price", "0.12"),
            ("Pinned completion price", "0.25"),
            ("Let the autoscaler", "maybe"), ("Let the autoscaler", "n"),
            ("Budget for rented hosts", "-1"), ("Budget for rented hosts", "2.50"),
            ("Daily profit target", "15"),
        ]
        seen: dict[str, int] = {}
        for prompt, keys in steps:
            seen[prompt] = answer(session, prompt, keys, seen=seen.get(prompt, 0))
        shown = screen_until(session, "Provision it now")
        for complaint in ("unknown model 'gpt-5'", "unknown source 'aws'", "an API key is needed",
                          "expected user@host[:port]", "unknown GPU 'rtx9999'", "unknown provider 'moon'",
                          "expected one of dynamic, list, pinned", "'abc' is not a decimal number",
                          "answer y or n", "budget_per_hour_usd: '-1' must be"):
            assert complaint in shown, complaint
        assert "Expected daily profit: " in shown and "Break-even utilization" in shown
        assert "llama-3.1-8b-instruct, 1x rtx3090 owned $0.19/h: " in shown and "profit target $15.00/day" in shown
        assert "Llama 3.1 Community License Agreement: commercial use restricted" in shown
        config = tmp_path / "config.toml"
        assert f"wrote {config} (mode 0600, with your API keys)" in shown
        answer(session, "Provision it now", "n", seen=0)
        shown = screen_until(session, "EXITED-")
        assert "EXITED-0" in shown
        assert ("tokenmill provision --provider ssh --model llama-3.1-8b-instruct --gpu rtx3090 --ssh-host "
                "gpu1.example.com --ssh-port 2222 --ssh-user ubuntu") in shown
        assert SECRET not in shown
    finally:
        tmux("kill-session", "-t", session)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    values = tomllib.loads(config.read_text())
    assert values["runpod_api_key"] == SECRET
    assert values["profit_target_daily_usd"] == "15.00"
    assert values["pricing"] == {"enabled": False}
    assert values["autoscaler"] == {"enabled": False, "budget_per_hour_usd": "2.50"}
    text = config.read_text()
    assert "models to sell: llama-3.1-8b-instruct, phi-4" in text and "ubuntu@gpu1.example.com:2222" in text
    assert "rtx3090:owned:1:llama-3.1-8b-instruct,rtx4090:runpod:1:phi-4" in text and "$0.12 / $0.25" in text


class Typed(Terminal):
    def __init__(self, answers: list[str]) -> None:
        self.answers, self.shown = list(answers), []

    def say(self, text: str = "") -> None:
        self.shown.append(text)

    def ask(self, prompt: str) -> str:
        self.shown.append(prompt)
        return self.answers.pop(0)

    def progress(self, text: str) -> None:
        pass


async def test_a_confirmed_first_host_goes_to_the_running_backend(tmp_path, monkeypatch, capsys):
    """The wizard hands `tokenmill provision` (the real command, as it prints it) to a running backend:
    the job starts there, and fails there, since the "machine" speaks no SSH."""
    key = keygen(tmp_path / "operator")  # the backend's key to log in to hosts with
    machine = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)  # accepts, then hangs up
    machine_port = machine.sockets[0].getsockname()[1]
    async with machine, running_router(router_settings(tmp_path / "router", ssh_key_path=key)) as router:
        monkeypatch.setenv("TOKENMILL_ADMIN_PORT", router.url.rsplit(":", 1)[1])
        monkeypatch.setenv("TOKENMILL_ADMIN_TOKEN", router.services.admin_token)
        term = Typed(["llama-3.1-8b-instruct", "ssh", f"root@127.0.0.1:{machine_port}", "rtx4090",
                      "", "list", "", "", "",  # fleet, prices, autoscaler, budget, target
                      "y"])  # provision it now
        go_ahead: list[str] = []
        monkeypatch.setattr(builtins, "input", lambda prompt="": go_ahead.append(prompt) or "y")
        p = argparse.ArgumentParser()
        add_command(p.add_subparsers(), run=_run_command)
        args = p.parse_args(["quickstart", "--days", "0.1"])
        code = await asyncio.wait_for(asyncio.to_thread(quickstart, load_settings(), args, _run_command, term),
                                      DEADLINE_S * 2)
        out = capsys.readouterr().out
        assert go_ahead == ["Go ahead? [y/N] "]  # `tokenmill provision` asked its own question
        assert f"root@127.0.0.1:{machine_port}: your machine, nothing is rented" in out
        jobs = await router.http.get("/admin/jobs", headers=router.admin)
        (job,) = jobs.json()
        assert job["kind"] == "provision" and job["state"] == "failed"
        assert code == 1, out
