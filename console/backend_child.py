"""Find the backend, or start one on the embedded default as a child process.

`tokenmill` with no argument attaches to the configured admin address; if nothing answers
there, it starts `tokenmill serve --local` (simulated fleet and traffic) and stops it on exit,
unless asked to keep it. The router never runs in the console's process: rendering must not
slow clients down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from console.client import tls_verification


def status(url: str, token: str, timeout_s: float = 1.0) -> dict | None:
    """The backend's /admin/status, or None when nothing (or something else) answers."""
    try:
        r = httpx.get(f"{url}/admin/status", timeout=timeout_s, headers={"Authorization": f"Bearer {token}"},
                      verify=tls_verification(url))
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def answers(url: str, token: str, timeout_s: float = 1.0) -> bool:
    return status(url, token, timeout_s) is not None


class BackendChild:
    """A `tokenmill serve --local` child, with its output in a log file."""

    def __init__(self, proc: subprocess.Popen, log_path: Path) -> None:
        self.proc, self.log_path = proc, log_path

    @classmethod
    def start(cls, url: str, token: str, log_path: Path, env: dict[str, str] | None = None,
              wait_s: float = 60.0) -> BackendChild:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "console.cli", "serve", "--local"],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, "TOKENMILL_STOP_WITH_PARENT": "1", **(env or {})},
                                    start_new_session=True)
        child = cls(proc, log_path)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the backend exited with {proc.returncode}; see {log_path}")
            if answers(url, token, 0.5):
                return child
            time.sleep(0.2)
        child.stop()
        raise RuntimeError(f"the backend did not answer at {url} within {wait_s:.0f}s; see {log_path}")

    def stop(self, timeout_s: float = 40.0) -> int:
        """Ask it to stop (it drains its simulated hosts first); kill it if it will not."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
