"""`tokenmill serve --local`, the README's main command, as a real process: simulated hosts
join, synthetic traffic is metered, the official SDK is served, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from tests.ports import free_port


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_serve_local_end_to_end(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "TOKENMILL_DATA_DIR": str(tmp_path), "TOKENMILL_ADMIN_PORT": str(port),
           "TOKENMILL_LOCAL_TRAFFIC_RPS": "20", "TOKENMILL_HEARTBEAT_INTERVAL_S": "0.5"}
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--local"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert "SIMULATED" in proc.stdout.readline()
        admin = {"Authorization": f"Bearer {(tmp_path / 'admin_token').read_text().strip()}"}
        deadline = time.monotonic() + 30
        hosts = []
        while time.monotonic() < deadline:
            hosts = httpx.get(f"{url}/admin/hosts", headers=admin).json()
            if len(hosts) == 3 and all(h["status"] == "active" for h in hosts):
                break
            time.sleep(0.2)
        assert len(hosts) == 3 and all(h["status"] == "active" for h in hosts), hosts
        agents = children_of(proc.pid)
        assert len(agents) == 4  # three host agents and the traffic generator
        # The demo runs the autoscaler (on provider local) with minute-scale timings.
        scaling = httpx.get(f"{url}/admin/autoscaler", headers=admin).json()
        assert scaling["enabled"] and scaling["interval_s"] == 10.0, scaling

        issued = httpx.post(f"{url}/admin/clients/demo-acme/keys", json={"name": "test"}, headers=admin)
        secret = issued.json()["secret"]
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        models = {m.id for m in sdk.models.list().data}
        assert models == {"qwen2.5-0.5b-instruct", "llama-3.1-8b-instruct", "qwen2.5-7b-instruct"}
        reply = sdk.chat.completions.create(model="qwen2.5-0.5b-instruct", max_tokens=5,
                                            messages=[{"role": "user", "content": "hello"}])
        assert reply.usage.completion_tokens == 5

        while time.monotonic() < deadline:  # synthetic traffic reaches the ledger
            usage = httpx.get(f"{url}/admin/usage?group_by=client", headers=admin).json()
            if sum(r["requests"] for r in usage) >= 10:
                break
            time.sleep(0.3)
        assert sum(r["requests"] for r in usage) >= 10
        assert {r["group"] for r in usage} >= {"demo-acme"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    for pid in agents:  # the agents drained, deregistered and exited
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
