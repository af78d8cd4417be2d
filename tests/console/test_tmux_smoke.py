"""The console in a real terminal (tmux): `tokenmill` starts its own backend, views switch,
`q` quits and stops that backend. .ci/run installs tmux from Debian's packages."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def screen_until(session: str, text: str, timeout_s: float = 45) -> str:
    deadline = time.monotonic() + timeout_s
    shown = ""
    while time.monotonic() < deadline:
        shown = tmux("capture-pane", "-t", session, "-p")
        if text in shown:
            return shown
        time.sleep(0.25)
    raise AssertionError(f"{text!r} never appeared; the screen was:\n{shown}")


def switch(session: str, view: str, expect: str) -> str:
    """`:` then the view's name, as a person types it (retried: keys sent before the command
    line is up are lost on a busy machine)."""
    for _ in range(4):
        tmux("send-keys", "-t", session, ":")
        time.sleep(0.5)
        tmux("send-keys", "-t", session, "-l", view)
        time.sleep(0.3)
        tmux("send-keys", "-t", session, "Enter")
        try:
            return screen_until(session, expect, timeout_s=10)
        except AssertionError:
            tmux("send-keys", "-t", session, "Escape")
            time.sleep(0.5)
    return screen_until(session, expect, timeout_s=1)


def test_console_in_a_real_terminal(tmp_path: Path):
    port = free_port()
    session = f"tm-smoke-{port}"
    tokenmill = Path(sys.executable).with_name("tokenmill")
    command = (f"TOKENMILL_DATA_DIR={tmp_path} TOKENMILL_ADMIN_PORT={port} {tokenmill}; "
               f"echo EXITED-$?; sleep 30")
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
    try:
        screen = screen_until(session, "revenue")
        assert ":overview" in screen and "SIMULATED" in screen
        screen = switch(session, "fleet", "local-community")
        assert ":fleet" in screen
        switch(session, "models", "llama-3.1-8b-instruct")
        tmux("send-keys", "-t", session, "q")
        screen_until(session, "EXITED-0")
    finally:
        tmux("kill-session", "-t", session)


def test_a_closed_terminal_also_stops_the_backend_the_console_started(tmp_path: Path):
    port = free_port()
    session = f"tm-hangup-{port}"
    tokenmill = Path(sys.executable).with_name("tokenmill")
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30",
         f"TOKENMILL_DATA_DIR={tmp_path} TOKENMILL_ADMIN_PORT={port} {tokenmill}")
    try:
        screen_until(session, "revenue")
    finally:
        tmux("kill-session", "-t", session)  # the SSH connection drops
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.5)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the backend is still serving"
