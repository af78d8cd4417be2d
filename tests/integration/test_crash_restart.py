"""kill -9 of the real `tokenmill serve --local` under load, and a restart on the same data dir:
no agent outlives it, no request is told its model does not exist, the holds of the requests it
was serving are released at once, every request a client saw complete is in the ledger, and the
ledger's invariants hold."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai

from backend.db.engine import make_engine
from backend.ledger.queries import check_invariants
from tests.integration.test_serve_local import children_of
from tests.ports import quiet_port

MODEL = "qwen2.5-0.5b-instruct"  # served by every local host but one
HOSTS = 3


def serve(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--local"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait(cond, what: str, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got = cond()
        except (httpx.HTTPError, OSError, ValueError):
            got = None
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def agents_using(data_dir: Path) -> list[int]:
    """Every live host agent whose config is in this data dir, whoever its parent."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = b"hostkit.cli" in cmdline and any(str(data_dir).encode() in arg for arg in cmdline)
        if ours and alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def db(data_dir: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(data_dir / "ledger.db") as conn:
        return conn.execute(sql, args).fetchall()


class Load:
    """Client requests through the official SDK from several threads, until stopped."""

    def __init__(self, url: str, secret: str, threads: int = 6) -> None:
        self.sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0, timeout=20)
        self.completed = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def _run(self, i: int) -> None:
        while not self.stop.is_set():
            try:
                reply = self.sdk.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": f"thread {i}"}], max_tokens=96)
            except openai.APIError:
                continue
            if reply.usage is not None and reply.usage.completion_tokens > 0:
                with self._lock:
                    self.completed += 1

    def join(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=30)
            assert not t.is_alive()
        self.sdk.close()


def test_kill_9_under_load_then_restart(tmp_path: Path):
    port = quiet_port()  # bound twice, seconds apart: outside the range outgoing connections take
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TOKENMILL_DATA_DIR": str(tmp_path), "TOKENMILL_ADMIN_PORT": str(port),
           "TOKENMILL_LOCAL_TRAFFIC_RPS": "10", "TOKENMILL_HEARTBEAT_INTERVAL_S": "0.5"}
    first = serve(env)
    second = None
    try:
        admin = wait(lambda: {"Authorization": f"Bearer {(tmp_path / 'admin_token').read_text().strip()}"},
                     "the admin token", 30)

        def hosts_active():
            hosts = httpx.get(f"{url}/admin/hosts", headers=admin).json()
            return len(hosts) == HOSTS and all(h["status"] == "active" for h in hosts)

        wait(hosts_active, "the local hosts to join", 45)
        agents = children_of(first.pid)
        assert len(agents) == HOSTS + 1  # and the traffic generator

        r = httpx.post(f"{url}/admin/clients", json={"name": "crash test"}, headers=admin)
        client_id = r.json()["id"]
        httpx.post(f"{url}/admin/clients/{client_id}/credit", headers=admin,
                   json={"amount_usd": "100.00", "idempotency_key": "crash-test"}).raise_for_status()
        secret = httpx.post(f"{url}/admin/clients/{client_id}/keys", json={"name": "t"}, headers=admin).json()["secret"]

        load = Load(url, secret)
        load.start()
        wait(lambda: load.completed >= 12, "requests to complete", 30)
        os.kill(first.pid, signal.SIGKILL)  # mid-load: requests in flight
        first.wait(timeout=10)
        load.join()

        # No agent outlives the process that started it.
        wait(lambda: not any(alive(p) for p in agents), "the agents to die with their parent", 10)
        assert agents_using(tmp_path) == []

        # What the crash left: holds of requests in flight, and every completed request metered.
        left_open = {k for (k,) in db(tmp_path, "SELECT key FROM ledger_open_hold")}
        assert left_open, "requests were in flight at the kill: their holds were durable"
        ok = db(tmp_path, "SELECT count(*) FROM usage_event WHERE client_id = ? AND status = 'ok'", client_id)[0][0]
        assert ok >= load.completed

        # Restart on the same data dir: until the hosts are back, "retry", never "not found".
        second = serve(env)
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0, timeout=20)
        statuses: list[int] = []
        deadline = time.monotonic() + 45
        while True:
            assert time.monotonic() < deadline, f"no request served after the restart: {statuses[-5:]}"
            try:
                sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "back?"}], max_tokens=2)
                break
            except openai.APIStatusError as exc:
                statuses.append(exc.status_code)
                assert exc.status_code != 404, exc
                assert exc.status_code in (429, 503) and int(exc.response.headers["retry-after"]) >= 1, exc
            except openai.APIConnectionError:
                pass  # not listening yet
            time.sleep(0.05)
        sdk.close()

        # The previous run's holds were voided at start-up, with an event.
        still_open = {k for (k,) in db(tmp_path, "SELECT key FROM ledger_open_hold")}
        assert not left_open & still_open
        voided = {k for (k,) in db(tmp_path, "SELECT pending_key FROM ledger_transfer WHERE kind = 'void_pending'")}
        assert left_open <= voided
        kinds = [e["kind"] for e in httpx.get(f"{url}/admin/events", headers=admin).json()]
        assert "ledger.holds_voided" in kinds

        # One agent per host, all the new run's; no host drained or flapping.
        wait(hosts_active, "the hosts to be active again", 30)
        running = agents_using(tmp_path)
        assert len(running) == HOSTS and set(running) <= set(children_of(second.pid))
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for pid in agents_using(tmp_path):  # orphans, if the test failed for them
            os.kill(pid, signal.SIGKILL)

    asyncio.run(_invariants(tmp_path))


async def _invariants(data_dir: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'ledger.db'}")
    try:
        async with engine.connect() as conn:
            assert await check_invariants(conn) == []
    finally:
        await engine.dispose()
