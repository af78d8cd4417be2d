"""The console under a large fleet: 1,000 hosts and 50 models registered with a real backend
(simulated heartbeats every 2 s, from a process of their own), and the real `tokenmill console`
in a real terminal (tmux, 120x40) refreshing every 2 s.

Heartbeats carry moving telemetry (GPU utilisation, temperature, power change on every beat), as
real hosts do, while CPU is measured; they are frozen for the key-press timings, so that the
screen changes only because of the key.

Measures, for the console process only:
  - first paint: from launching it to the overview showing the fleet's figures;
  - CPU: share of one core over --seconds on each of the overview, models and fleet views;
  - key press to repaint: a cursor move in the fleet table (1,000 rows) and a view switch, from
    the key sent to the terminal showing the change (polled every ~5 ms through tmux).
Targets (issue 4): CPU < 15% of a core, key press < 100 ms, first paint < 1.5 s.

    .venv/bin/python bench/console_load.py [--hosts 1000] [--models 50] [--seconds 20] [--launches 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hostkit import protocol  # noqa: E402
from tests.ports import free_port  # noqa: E402

SESSION = "tokenmill-console-bench"
BIN = Path(sys.executable).parent


# ---------------------------------------------------------------------- the catalogue
def write_catalogue(directory: Path, n_models: int) -> list[str]:
    """The shipped catalogue, with its models cloned under new ids up to n_models."""
    shipped = ROOT / "data" / "catalogue"
    shutil.copy(shipped / "gpus.toml", directory / "gpus.toml")
    text = (shipped / "models.toml").read_text()
    head, *blocks = text.split("\n[[model]]\n")
    ids = [re.search(r'^id = "([^"]+)"', b, re.M).group(1) for b in blocks]
    out, all_ids = [head], list(ids)
    out += blocks
    copy = 0
    while len(all_ids) < n_models:
        src = blocks[copy % len(blocks)]
        new_id = f"{ids[copy % len(ids)]}-b{copy // len(ids) + 2}"
        clone = re.sub(r'^id = "[^"]+"', f'id = "{new_id}"', src.replace("default = true\n", ""), count=1, flags=re.M)
        clone = re.sub(r'^hf_id = "([^"]+)"', rf'hf_id = "\1-b{copy // len(ids) + 2}"', clone, count=1, flags=re.M)
        out.append(clone)
        all_ids.append(new_id)
        copy += 1
    (directory / "models.toml").write_text("\n[[model]]\n".join(out))
    return all_ids


# ---------------------------------------------------------------------- simulated hosts
def gpus_for(rng: random.Random) -> list[protocol.GpuTelemetry]:
    n = rng.choice((1, 1, 2, 4, 8))
    return [protocol.GpuTelemetry(i, "NVIDIA A100-SXM4-80GB", 81920, rng.randint(20_000, 80_000), rng.randint(0, 100),
                                  rng.randint(40, 85), float(rng.randint(80, 400)), 400.0) for i in range(n)]


async def heartbeats(url: str, hosts_file: Path) -> None:
    """Register every host, then heartbeat each every 2 s, spread evenly over the interval.
    Telemetry is fixed per host so that refreshes redraw the same text (key timings stay clean)."""
    import aiohttp
    import msgspec

    hosts = json.loads(hosts_file.read_text())
    rng = random.Random(1)
    state = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        for h in hosts:
            served = [protocol.ServedModel(model=m, endpoint=f"http://10.9.{h['i'] // 250}.{h['i'] % 250}:{8001 + k}",
                                           metrics=protocol.EngineMetrics(kv_cache_usage_perc=rng.random()))
                      for k, m in enumerate(h["models"])]
            checks = [protocol.CheckResult(m, True, 0, "bench") for m in h["models"]]
            gpus = gpus_for(rng)
            auth = {"Authorization": f"Bearer {h['token']}"}
            body = protocol.Register(name=h["name"], models=served, gpus=gpus, gpu_type="a100-80gb",
                                     agent_version="bench", checks=checks)
            async with http.post(url + "/hosts/register", data=_enc(body), headers=auth) as r:
                r.raise_for_status()
            state.append((auth, _enc(protocol.Heartbeat(models=served, gpus=gpus, checks=checks))))
        print("registered", len(state), flush=True)
        gap = protocol.HEARTBEAT_INTERVAL_S / len(state)
        frozen = hosts_file.with_suffix(".frozen")
        while True:
            start = time.monotonic()
            for i, (auth, body) in enumerate(state):
                delay = start + i * gap - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not frozen.exists():  # live telemetry: utilisation, memory, temperature, power move
                    msg = msgspec.json.decode(body, type=protocol.Heartbeat)
                    for g in msg.gpus:
                        g.utilization_pct = rng.randint(0, 100)
                        g.temperature_c = rng.randint(40, 85)
                        g.power_draw_w = float(rng.randint(80, 400))
                    body = _enc(msg)
                async with http.post(url + "/hosts/heartbeat", data=body, headers=auth) as r:
                    await r.read()


def _enc(msg) -> bytes:
    import msgspec

    return msgspec.json.encode(msg)


# ---------------------------------------------------------------------- the terminal
def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def screen(escapes: bool = False) -> str:
    return tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", SESSION)


def wait_screen(predicate, limit_s: float = 30.0, escapes: bool = False) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        if predicate(screen(escapes)):
            return time.perf_counter()
        time.sleep(0.003)
    raise TimeoutError("the console did not show what was expected:\n" + screen())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_gone(limit_s: float = 15.0) -> None:
    deadline = time.perf_counter() + limit_s
    while subprocess.run(["tmux", "has-session", "-t", SESSION], capture_output=True).returncode == 0:
        if time.perf_counter() > deadline:
            raise TimeoutError("the console did not quit")
        time.sleep(0.05)


def console_pid() -> int:
    return int(tmux("list-panes", "-t", SESSION, "-F", "#{pane_pid}").split()[0])


def press_and_time(keys: list[str], changed) -> float:
    before = screen(escapes=True)
    sent = time.perf_counter()
    tmux("send-keys", "-t", SESSION, *keys)
    done = wait_screen(lambda s: s != before and changed(s), 10, escapes=True)
    return (done - sent) * 1000


def switch(view: str) -> float:
    """Type `:view`, then time the Enter that switches (one key press, one repaint)."""
    tmux("send-keys", "-t", SESSION, ":", view)
    time.sleep(0.5)  # the typing is not what is timed
    return press_and_time(["Enter"], lambda s: f":{view}" in s.splitlines()[0])


# ---------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0, help="CPU sampling time per view")
    ap.add_argument("--launches", type=int, default=5, help="console starts timed for the first paint")
    ap.add_argument("--profile", metavar="FILE", help="py-spy the console during the view switches (collapsed stacks)")
    ap.add_argument("--heartbeats", help=argparse.SUPPRESS)  # internal: run the heartbeat process
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.heartbeats:
        asyncio.run(heartbeats(args.url, Path(args.heartbeats)))
        return 0
    if shutil.which("tmux") is None:
        print("needs tmux (apt-get install tmux)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="tm-console-bench-"))
    (work / "catalogue").mkdir()
    models = write_catalogue(work / "catalogue", args.models)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TOKENMILL_DATA_DIR": str(work / "data"), "TOKENMILL_CATALOGUE_DIR": str(work / "catalogue"),
           "TOKENMILL_ADMIN_PORT": str(port), "TOKENMILL_ADMIN_TOKEN": "tma-bench-" + os.urandom(8).hex()}
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen([BIN / "tokenmill", "serve"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=open(work / "backend.err", "w")))
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {env['TOKENMILL_ADMIN_TOKEN']}"},
                             timeout=30)
        for _ in range(300):
            try:
                admin.get("/admin/status").raise_for_status()
                break
            except httpx.HTTPError:
                if procs[0].poll() is not None:
                    err = (work / "backend.err").read_text()[-3000:]
                    raise SystemExit("the backend did not start:\n" + err) from None
                time.sleep(0.1)
        t = time.perf_counter()
        hosts = []
        for i in range(args.hosts):
            r = admin.post("/admin/hosts", json={"name": f"host-{i:04d}", "provider": "runpod",
                                                 "cost_per_hour_usd": f"{0.4 + (i % 7) * 0.3:.2f}"})
            r.raise_for_status()
            hosts.append({"i": i, "name": f"host-{i:04d}", "token": r.json()["token"],
                          "models": [models[i % len(models)], models[(i * 7 + 3) % len(models)]]})
        (work / "hosts.json").write_text(json.dumps(hosts))
        procs.append(subprocess.Popen([sys.executable, __file__, "--heartbeats", str(work / "hosts.json"),
                                       "--url", url], stdout=subprocess.DEVNULL))
        while admin.get("/admin/status").json()["hosts_up"] < args.hosts:
            time.sleep(0.2)
        print(f"{args.hosts} hosts enrolled and heartbeating, {len(models)} models ({time.perf_counter() - t:.1f} s)")
        t = time.perf_counter()
        admin.get("/admin/hosts").raise_for_status()
        print(f"GET /admin/hosts ({args.hosts} hosts): {(time.perf_counter() - t) * 1000:.0f} ms")

        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
        cmd = (f"env TOKENMILL_ADMIN_TOKEN={env['TOKENMILL_ADMIN_TOKEN']} TOKENMILL_DATA_DIR={work / 'console'} "
               f"{BIN / 'tokenmill'} console --attach {url}")
        frames, paints = [], []
        for launch in range(args.launches):
            if launch:  # quit the previous one; the last one stays for the rest of the run
                tmux("send-keys", "-t", SESSION, "q")
                wait_gone()
                time.sleep(1)
            launched = time.perf_counter()
            tmux("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40", cmd)
            frames.append((wait_screen(lambda s: ":overview" in s) - launched) * 1000)
            paints.append((wait_screen(lambda s: f"hosts up {args.hosts}/{args.hosts}" in s) - launched) * 1000)
        print(f"first paint over {args.launches} launches: with the fleet's figures "
              f"p50 {statistics.median(paints):.0f} ms (min {min(paints):.0f}, max {max(paints):.0f}); "
              f"the frame alone p50 {statistics.median(frames):.0f} ms")
        pid = console_pid()

        results = {}
        for view in ("overview", "models", "fleet"):
            switch_ms = switch(view) if view != "overview" else 0.0  # the overview is already on screen
            if view == "fleet":
                wait_screen(lambda s: "host-0000" in s)
            time.sleep(2.5)
            c0, w0 = cpu_seconds(pid), time.perf_counter()
            time.sleep(args.seconds)
            cpu = (cpu_seconds(pid) - c0) / (time.perf_counter() - w0) * 100
            results[view] = (cpu, switch_ms)
            took = f"; switching to it took {switch_ms:.0f} ms" if switch_ms else ""
            print(f"{view:>8}: CPU {cpu:5.1f}% of a core over {args.seconds:.0f} s (refresh every 2 s){took}")

        # Key timings need a screen that changes only because of the key: freeze the telemetry.
        (work / "hosts.frozen").touch()
        time.sleep(3)
        moves = []
        for _ in range(20):
            moves.append(press_and_time(["Down"], lambda s: True))
            time.sleep(0.15)
        moves.sort()
        print(f"key press to repaint (cursor down, fleet table of {args.hosts} rows, 20 presses): "
              f"p50 {statistics.median(moves):.0f} ms, max {moves[-1]:.0f} ms")
        spy = None
        if args.profile:
            spy = subprocess.Popen([BIN / "py-spy", "record", "--nonblocking", "--format", "raw", "-r", "500",
                                    "-o", args.profile, "-p", str(pid)], stdout=subprocess.DEVNULL)
            time.sleep(1)
        back = [switch(v) for v in ("models", "fleet", "overview", "fleet") * 3]
        if spy:
            spy.send_signal(2)
            spy.wait(30)
        print(f"view switch (Enter after :view) to repaint, 12 switches: p50 {statistics.median(back):.0f} ms, "
              f"max {max(back):.0f} ms ({', '.join(f'{b:.0f}' for b in back)})")
        tmux("send-keys", "-t", SESSION, "q")
        time.sleep(1)
        return 0
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
