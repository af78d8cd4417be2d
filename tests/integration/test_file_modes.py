"""What `tokenmill serve --local` writes is the operator's alone: the data directory 0700; the
ledger, logs, tokens and agent configurations 0600 (they hold usage, names and host tokens),
even under the usual umask 022 and even where an earlier run left them readable by others."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.ports import free_port


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_is_0700_and_its_files_0600(tmp_path: Path):
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    data.chmod(0o755)
    old_log = data / "logs" / "tokenmill.log"
    old_log.write_text("from an earlier run\n")
    old_log.chmod(0o644)

    port = free_port()
    env = {**os.environ, "TOKENMILL_DATA_DIR": str(data), "TOKENMILL_ADMIN_PORT": str(port),
           "TOKENMILL_LOCAL_TRAFFIC_RPS": "20", "TOKENMILL_HEARTBEAT_INTERVAL_S": "0.5"}
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--local"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: os.umask(0o022))
    url = f"http://127.0.0.1:{port}"
    try:
        assert "SIMULATED" in proc.stdout.readline()
        admin = {"Authorization": f"Bearer {(data / 'admin_token').read_text().strip()}"}
        deadline = time.monotonic() + 30
        usage: list[dict] = []
        while time.monotonic() < deadline:  # hosts joined and traffic reached the ledger
            usage = httpx.get(f"{url}/admin/usage?group_by=client", headers=admin).json()
            if sum(r["requests"] for r in usage) >= 3:
                break
            time.sleep(0.3)
        assert sum(r["requests"] for r in usage) >= 3

        assert mode(data) == 0o700
        files = [data / "admin_token", data / "ledger.db", data / "ledger.db-wal", data / "ledger.db-shm",
                 old_log, data / "local" / "host-tokens.json"]
        files += sorted((data / "local").glob("*.toml")) + sorted((data / "logs").glob("local-*.log"))
        assert len(list((data / "local").glob("*.toml"))) == 3  # one agent configuration per host
        assert len(list((data / "logs").glob("local-*.log"))) >= 3
        assert {str(f.relative_to(data)): oct(mode(f)) for f in files if mode(f) != 0o600} == {}
        assert mode(data / "local") == 0o700
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
