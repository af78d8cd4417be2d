"""What the router adds: latency, throughput and CPU per request, with auth, credit hold,
routing and durable metering all on.

For each mode (non-streaming, streaming) and concurrency (1, 16, 64) the closed-loop load
generator (loadgen.py) measures
    DIRECT   loadgen -> fake upstream
    THROUGH  loadgen -> `tokenmill serve` -> fake upstream
with the router pinned to core 0 and the fake upstream, the load generator and this runner
pinned to core 1 (`taskset`). The router runs from a fresh temporary data dir (its own SQLite
ledger and admin token); the fake upstream is enrolled and registered as a host's engine
through the real admin and host APIs (with an engine key, so the router sends it as in production)
and kept alive by heartbeats; a client with credit and a key pays for every request. At the end
the usage report (`GET /admin/usage?group_by=model`) must count every request served through the
router.

    .venv/bin/python bench/gateway/run.py                  # 5 s per point (~2 min)
    .venv/bin/python bench/gateway/run.py --quick          # smoke run (~30 s)
    .venv/bin/python bench/gateway/run.py --profile        # then py-spy the router at concurrency 64
    .venv/bin/python bench/gateway/run.py --engine-tls     # router -> engine over pinned TLS
    .venv/bin/python bench/gateway/run.py --pricing off    # dynamic pricing off (default: on); `busy`:
                                                           # prices recomputed every second

--engine-tls: the router reaches the engine as it reaches a rented host's, over HTTPS with the
engine's self-signed certificate pinned (hostkit/engine_tls.py makes it, the host reports its
SHA-256); DIRECT stays plain HTTP, so the router-added figures include what TLS costs the router.

Router-added latency = THROUGH p50 - DIRECT p50 (TTFT likewise). Router CPU per request =
the router process's utime+stime over the measured window / requests in the window.
Results: a table on stdout and JSON in --out (default /tmp/tokenmill-gateway-bench/latest.json,
outside the checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from hostkit import protocol  # noqa: E402

MODEL = "llama-3.1-8b-instruct"
# Reported as a real agent does, so the router forwards with `Authorization: Bearer <key>` as it does in
# production (the fake upstream does not check it: the integration tests do).
ENGINE_KEY = "bench-engine-key-" + "0" * 26
CONCURRENCY = (1, 16, 64)
MODES = ("unary", "stream")
DEFAULT_OUT = Path(tempfile.gettempdir()) / "tokenmill-gateway-bench" / "latest.json"
TARGETS = {
    "added_p50_ms_c1_unary": 1.0,
    "added_ttft_p50_ms_c1_stream": 1.0,
    "rps_c64_unary": 2000.0,
    "rps_c64_stream": 1000.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class Procs:
    """Every child this runner starts, stopped in reverse order, always."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, grace_s: float = 10.0) -> None:
        if p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait(5)

    def stop_all(self) -> None:
        for _, p in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(p)
        self.procs.clear()


def pin(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None else []


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs = Procs()
        self.tmp = Path(tempfile.mkdtemp(prefix="tokenmill-gw-bench-"))
        self.pinned = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
        self.router_core = 0 if self.pinned else None
        self.load_core = 1 if self.pinned else None
        self.router: subprocess.Popen | None = None
        self.upstream: subprocess.Popen | None = None
        self.router_url = ""
        self.upstream_url = ""  # plain HTTP: what DIRECT measures
        self.engine_url = ""  # what the router is told: the same, or its HTTPS port with --engine-tls
        self.engine_pin: str | None = None
        self.admin: dict[str, str] = {}
        self.host_token = ""
        self.key = ""
        self.through_ok = 0
        self.hb_errors = 0
        self.hb_sent = 0

    # ------------------------------------------------------------------ processes
    def start_upstream(self) -> None:
        cmd = [*pin(self.load_core), sys.executable, str(HERE / "fake_upstream.py"), "--host", "127.0.0.1",
               "--port", "0", "--model", MODEL]
        if self.args.token_interval_ms:
            cmd += ["--token-interval-ms", str(self.args.token_interval_ms)]
        if self.args.engine_tls:
            from hostkit.engine_tls import ensure_engine_cert

            cert = ensure_engine_cert(self.tmp / "tls")
            self.engine_pin = cert.sha256
            cmd += ["--tls-cert", str(cert.cert_path), "--tls-key", str(cert.key_path)]
        self.upstream = self.procs.start("upstream", cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True)
        line = self.upstream.stdout.readline()  # "fake upstream on http://127.0.0.1:PORT"
        if "http://" not in line:
            raise SystemExit(f"fake upstream did not start: {line!r}")
        self.upstream_url = self.engine_url = line.strip().rsplit(" ", 1)[1]
        if self.args.engine_tls:
            line = self.upstream.stdout.readline()  # "fake upstream on https://127.0.0.1:PORT"
            if "https://" not in line:
                raise SystemExit(f"fake upstream did not serve TLS: {line!r}")
            self.engine_url = line.strip().rsplit(" ", 1)[1]

    async def start_router(self) -> None:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENMILL_")}
        env.update(TOKENMILL_DATA_DIR=str(self.tmp / "data"), TOKENMILL_ADMIN_PORT=str(port),
                   TOKENMILL_ADMIN_HOST="127.0.0.1", TOKENMILL_KEY_RATE_LIMIT_RPS="0",
                   TOKENMILL_HEARTBEAT_INTERVAL_S="5", TOKENMILL_LOG_LEVEL="WARNING",
                   XDG_CONFIG_HOME=str(self.tmp / "config"))  # no stray ~/.config/tokenmill/config.toml
        if self.args.pricing == "off":
            env["TOKENMILL_PRICING__ENABLED"] = "false"
        elif self.args.pricing == "busy":
            # The worst case for the request path: prices recomputed every second from a 5 s window,
            # so quotes change under load many times per measured point.
            env.update(TOKENMILL_PRICING__ENABLED="true", TOKENMILL_PRICING__INTERVAL_S="1",
                       TOKENMILL_PRICING__WINDOW_S="5", TOKENMILL_PRICING__HYSTERESIS_PCT="0")
        exe = Path(sys.executable).parent / "tokenmill"
        cmd = [*pin(self.router_core), str(exe), "serve"]
        self.router_log = self.tmp / "router.out"
        self.router_cmd = " ".join(cmd)
        with open(self.router_log, "wb") as out:
            self.router = self.procs.start("router", cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.router_url = f"http://127.0.0.1:{port}"
        token_file = self.tmp / "data" / "admin_token"
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=self.router_url, timeout=5) as http:
            while True:
                if self.router.poll() is not None:
                    raise SystemExit(f"`{self.router_cmd}` exited with {self.router.returncode}:\n"
                                     f"{self.router_log.read_text(errors='replace')}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"`{self.router_cmd}` not ready after 60 s:\n"
                                     f"{self.router_log.read_text(errors='replace')}")
                if token_file.is_file() and token_file.read_text().strip():
                    self.admin = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
                    with contextlib.suppress(httpx.HTTPError):
                        r = await http.get("/admin/clients", headers=self.admin)
                        if r.status_code == 200:
                            return
                await asyncio.sleep(0.1)

    # ------------------------------------------------------------------ setup through the APIs
    @staticmethod
    def _ok(r: httpx.Response, what: str) -> dict:
        if r.status_code // 100 != 2:
            raise SystemExit(f"{what}: {r.request.method} {r.request.url} -> {r.status_code} {r.text}")
        return r.json()

    def _served(self) -> list[protocol.ServedModel]:
        return [protocol.ServedModel(model=MODEL, endpoint=self.engine_url, engine="sim")]

    @staticmethod
    def _checks() -> list[protocol.CheckResult]:
        # The router routes only to models whose hardware check passed; the fake upstream has no hardware.
        return [protocol.CheckResult(model=MODEL, passed=True, checked_us=1, summary="passed: bench upstream")]

    async def setup(self, http: httpx.AsyncClient) -> None:
        host = self._ok(await http.post("/admin/hosts", json={"name": "bench-upstream", "provider": "local"},
                                        headers=self.admin), "enroll host")
        self.host_token = host["token"]
        reg = protocol.Register(name="bench-upstream", models=self._served(), agent_version="bench",
                                checks=self._checks(), engine_key=ENGINE_KEY, engine_tls_sha256=self.engine_pin)
        self._ok(await http.post("/hosts/register", content=msgspec.json.encode(reg),
                                 headers={"Authorization": f"Bearer {self.host_token}",
                                          "Content-Type": "application/json"}), "register host")
        client = self._ok(await http.post("/admin/clients", json={"name": "bench"}, headers=self.admin),
                          "create client")
        cid = client["id"]
        self._ok(await http.post(f"/admin/clients/{cid}/credit",
                                 json={"amount_usd": "1000000", "idempotency_key": "bench"}, headers=self.admin),
                 "grant credit")
        self.key = self._ok(await http.post(f"/admin/clients/{cid}/keys", json={"name": "bench"},
                                            headers=self.admin), "issue key")["secret"]
        # Llama's licence needs the client's acknowledgement before its first request: the operator gives it.
        r = await http.post(f"/admin/clients/{cid}/licences/{MODEL}", headers=self.admin)
        if r.status_code != 404:  # a router from before licence acknowledgements has no such route
            self._ok(r, "accept the model's licence")
        models = self._ok(await http.get("/admin/models", headers=self.admin), "list models")
        mine = next(m for m in models if m["id"] == MODEL)
        if not mine["replicas"]:
            raise SystemExit(f"{MODEL} has no replica after registration: {mine}")

    async def heartbeat(self, http: httpx.AsyncClient) -> None:
        def body(busy: bool) -> bytes:
            served = self._served()
            if self.args.pricing == "busy":
                # The engine's load swings every heartbeat, so that prices keep moving under load.
                kv = 0.95 if busy else 0.05
                served = [msgspec.structs.replace(m, metrics=protocol.EngineMetrics(kv_cache_usage_perc=kv,
                                                                                    max_num_seqs=256))
                          for m in served]
            return msgspec.json.encode(protocol.Heartbeat(models=served, checks=self._checks(),
                                                          engine_key=ENGINE_KEY, engine_tls_sha256=self.engine_pin))

        bodies = (body(True), body(False))
        headers = {"Authorization": f"Bearer {self.host_token}", "Content-Type": "application/json"}
        while True:
            await asyncio.sleep(2.0)
            self.hb_sent += 1
            try:
                r = await http.post("/hosts/heartbeat", content=bodies[(self.hb_sent // 2) % 2], headers=headers)
                if r.status_code != 200:
                    self.hb_errors += 1
                    print(f"  heartbeat -> {r.status_code} {r.text}", file=sys.stderr)
            except httpx.HTTPError as exc:
                self.hb_errors += 1
                print(f"  heartbeat failed: {exc!r}", file=sys.stderr)

    # ------------------------------------------------------------------ measuring
    async def loadgen(self, url: str, key: str, mode: str, concurrency: int, watch: list[int],
                      seconds: float | None = None) -> dict:
        a = self.args
        seconds = a.seconds if seconds is None else seconds
        cmd = [*pin(self.load_core), sys.executable, str(HERE / "loadgen.py"), "--url", url, "--model", MODEL,
               "--concurrency", str(concurrency), "--seconds", str(seconds), "--warmup", str(a.warmup)]
        if key:
            cmd += ["--key", key]
        if mode == "stream":
            cmd.append("--stream")
        if a.no_include_usage:
            cmd.append("--no-include-usage")
        for pid in watch:
            cmd += ["--watch-pid", str(pid)]
        p = self.procs.start("loadgen", cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = await asyncio.to_thread(p.communicate, timeout=a.warmup + seconds + 90)
        except subprocess.TimeoutExpired:
            self.procs.stop(p, 2)
            raise SystemExit(f"loadgen did not finish in time: {' '.join(cmd)}") from None
        finally:
            self.procs.stop(p, 2)
            self.procs.procs = [(n, q) for n, q in self.procs.procs if q is not p]
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if not lines:
            raise SystemExit(f"loadgen failed ({p.returncode}): {' '.join(cmd)}\n{out}\n{err}")
        return json.loads(lines[-1])

    def _other(self, r: dict, router_cpu: float | None) -> float | None:
        if self.router_core is None or router_cpu is None:
            return None
        busy = r.get("cores_busy_s", {}).get(f"cpu{self.router_core}")
        return None if busy is None else round(100 * max(busy - router_cpu, 0) / r["window_s"], 1)

    async def point(self, mode: str, concurrency: int) -> list[dict]:
        rows = []
        assert self.router is not None and self.upstream is not None
        for path in ("direct", "through"):
            url, key = (self.upstream_url, "") if path == "direct" else (self.router_url, self.key)
            r = await self.loadgen(url, key, mode, concurrency, [self.router.pid, self.upstream.pid])
            if path == "through":
                self.through_ok += r["ok_total"]
            cpu = r["cpu_s"]
            rc = cpu.get(str(self.router.pid)) or {}
            router_cpu = rc.get("total")
            upstream_cpu = (cpu.get(str(self.upstream.pid)) or {}).get("total")
            win = r["window_s"]
            n = r["requests"] if path == "through" and r["requests"] else None

            def per_req(k: str, rc=rc, n=n) -> float | None:
                return round(rc[k] / n * 1e6, 1) if n and k in rc else None

            row = {
                "mode": mode, "concurrency": concurrency, "path": path, **{k: r[k] for k in (
                    "requests", "window_s", "rps", "lat_p50_ms", "lat_p99_ms", "lat_mean_ms", "ttft_p50_ms",
                    "ttft_p99_ms", "errors", "error_kinds", "ok_total")},
                "router_cpu_s": router_cpu,
                "router_cpu_us_per_req": per_req("total"),
                # user/system split, and the event loop thread vs the others (ledger writer,
                # WAL checkpoint, aiosqlite): where the router's CPU goes without a profiler
                "router_user_us_per_req": per_req("user"),
                "router_sys_us_per_req": per_req("sys"),
                "router_loop_thread_us_per_req": per_req("main_thread"),
                "router_core_pct": round(100 * router_cpu / win, 1) if router_cpu is not None else None,
                "core1_pct": round(100 * ((upstream_cpu or 0) + r["loadgen_cpu_s"]) / win, 1),
                # CPU time on the router's core spent by anything else (other processes on this
                # machine): a measurement disturbed by neighbours shows here.
                "core0_other_pct": self._other(r, router_cpu),
                "steal_pct": {c: round(100 * v / win, 1) for c, v in r.get("cores_steal_s", {}).items()},
            }
            rows.append(row)
            print(f"  {mode:6} c={concurrency:<3} {path:8} {row['rps']:>9} req/s  p50 {row['lat_p50_ms']} ms"
                  f"  p99 {row['lat_p99_ms']} ms  ttft p50 {row['ttft_p50_ms']}  errors {row['errors']}"
                  f"  router cpu {row['router_core_pct']}%", flush=True)
        return rows

    async def usage(self, http: httpx.AsyncClient) -> tuple[list[dict], bool]:
        """Wait (bounded) for the ledger to count every request served through the router."""
        deadline = time.monotonic() + 15
        while True:
            rows = self._ok(await http.get("/admin/usage", params={"group_by": "model"}, headers=self.admin),
                            "usage report")
            counted = sum(r["requests"] for r in rows if r["group"] == MODEL)
            if counted >= self.through_ok or time.monotonic() > deadline:
                return rows, counted == self.through_ok
            await asyncio.sleep(0.5)

    async def profile(self) -> dict:
        """py-spy the router (sampling, --nonblocking so the router is never paused) under load,
        per mode and profiled concurrency. Raw collapsed stacks are kept next to --out."""
        spy = Path(sys.executable).parent / "py-spy"
        spy_cmd = str(spy) if spy.exists() else shutil.which("py-spy")
        if spy_cmd is None:
            return {"error": "py-spy not installed (.venv/bin/pip install py-spy)"}
        out: dict = {}
        assert self.router is not None and self.upstream is not None
        keep_dir = self.args.out.parent
        keep_dir.mkdir(parents=True, exist_ok=True)
        seconds = max(self.args.seconds, 3)
        for mode in MODES:
            for c in self.args.profile_concurrency:
                name = f"{mode}-c{c}"
                raw = keep_dir / f"profile-{name}.txt"
                raw.unlink(missing_ok=True)
                cmd = [*pin(self.load_core), spy_cmd, "record", "--pid", str(self.router.pid), "--rate", "200",
                       "--function", "--threads", "--format", "raw", "-o", str(raw),
                       "--duration", str(int(seconds + self.args.warmup + 1))]
                cmd.append("--nonblocking")  # never pause the router
                p = self.procs.start("py-spy", cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                await asyncio.sleep(0.5)
                load = await self.loadgen(self.router_url, self.key, mode, c, [self.router.pid], seconds=seconds)
                self.through_ok += load["ok_total"]
                try:
                    log, _ = await asyncio.to_thread(p.communicate, timeout=60)
                except subprocess.TimeoutExpired:
                    log = ""
                self.procs.stop(p, 2)
                self.procs.procs = [(n, q) for n, q in self.procs.procs if q is not p]
                if not raw.is_file():
                    out[name] = {"error": f"py-spy wrote nothing: {log.strip()[-2000:]}"}
                    continue
                out[name] = top_self(raw.read_text(errors="replace"), 15)
                out[name].update(raw_file=str(raw), rps_under_profiler=load["rps"])
        return out

    # ------------------------------------------------------------------ the run
    async def run(self) -> dict:
        a = self.args
        if self.pinned:
            os.sched_setaffinity(0, {1})  # this runner shares core 1 with the load, never the router's
        self.start_upstream()
        await self.start_router()
        print(f"router: {self.router_cmd} (pid {self.router.pid}, core {self.router_core}) on {self.router_url}; "
              f"fake upstream {self.upstream_url}{' and ' + self.engine_url if a.engine_tls else ''} "
              f"(pid {self.upstream.pid}, core {self.load_core}); "
              f"data dir {self.tmp / 'data'}", flush=True)
        async with httpx.AsyncClient(base_url=self.router_url, timeout=10) as http:
            await self.setup(http)
            beat = asyncio.create_task(self.heartbeat(http))
            try:
                rows: list[dict] = []
                for mode in MODES:
                    for c in a.concurrency:
                        rows += await self.point(mode, c)
                profile = await self.profile() if a.profile else None
                usage, metered = await self.usage(http)
                prices = self._ok(await http.get(f"/admin/models/{MODEL}/prices", params={"from": 0},
                                                 headers=self.admin), "price history")
                price_changes = sum(1 for c in prices["changes"] if c["source"] == "engine")
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
        return {
            "config": {"seconds": a.seconds, "warmup": a.warmup, "concurrency": list(a.concurrency),
                       "model": MODEL, "pinned": self.pinned, "router_core": self.router_core,
                       "load_core": self.load_core, "include_usage_sent_by_client": not a.no_include_usage,
                       "token_interval_ms": a.token_interval_ms, "engine_tls": a.engine_tls, "pricing": a.pricing,
                       "python": sys.version.split()[0],
                       "cpu": cpu_model(), "router_rss_mib_end": proc_rss_mib(self.router.pid)},
            "points": rows, "added": added(rows), "targets": targets(rows),
            "usage_by_model": usage, "through_ok_total": self.through_ok, "metering_ok": metered,
            "heartbeats": {"sent": self.hb_sent, "errors": self.hb_errors},
            "price_changes": price_changes,  # the pricing engine's changes of MODEL's price during the run
            "valid": all(r["errors"] == 0 for r in rows) and metered and self.hb_errors == 0,
            "profile": profile,
        }

    def close(self) -> None:
        self.procs.stop_all()
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------- reporting
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def top_self(raw: str, n: int) -> dict:
    """Own-time ranking from py-spy's collapsed stacks ("thread (tid): name;a;b;leaf count" per
    line, with --threads), plus the share of samples per thread name."""
    own: dict[str, int] = {}
    threads: dict[str, int] = {}
    packages: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread (") else "?"
        thread = thread.rstrip("_0123456789") or thread  # ledger-writer_0 -> ledger-writer
        threads[thread] = threads.get(thread, 0) + c
        leaf = frames[-1] if len(frames) > 1 else f"{thread}: no Python frame (C code, e.g. interpreter start-up)"
        own[leaf] = own.get(leaf, 0) + c
        pkg = _package(leaf)
        packages[pkg] = packages.get(pkg, 0) + c
    top = sorted(own.items(), key=lambda kv: -kv[1])[:n]
    total = total or 1

    def shares(d: dict[str, int]) -> dict[str, str]:
        return {k: f"{100 * v / total:.0f}%" for k, v in sorted(d.items(), key=lambda kv: -kv[1])}

    return {"samples": total, "threads": shares(threads), "packages": shares(packages),
            "top": [{"function": f, "samples": c, "pct": round(100 * c / total, 1)} for f, c in top]}


def _package(leaf: str) -> str:
    """Whose code a sample's leaf frame is: "Runner.run (asyncio/runners.py:86)" is the event
    loop's own C code (uvloop) and the system calls it makes, since no Python frame is above it."""
    if leaf.startswith("Runner.run (asyncio/runners.py"):
        return "uvloop C + syscalls"
    if leaf.startswith("_worker (concurrent/futures/thread.py"):
        return "thread pool wake-up/GIL"
    if "no Python frame" in leaf:
        return "no Python frame"
    path = leaf.rpartition(" (")[2].split(":")[0]
    parts = path.split("/")
    if parts[0] == "backend" and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0] if len(parts) > 1 else path


def _find(rows: list[dict], mode: str, c: int, path: str) -> dict | None:
    return next((r for r in rows if (r["mode"], r["concurrency"], r["path"]) == (mode, c, path)), None)


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def added(rows: list[dict]) -> list[dict]:
    out = []
    for mode in MODES:
        for c in sorted({r["concurrency"] for r in rows}):
            d, t = _find(rows, mode, c, "direct"), _find(rows, mode, c, "through")
            if d is None or t is None:
                continue
            out.append({"mode": mode, "concurrency": c,
                        "added_p50_ms": _sub(t["lat_p50_ms"], d["lat_p50_ms"]),
                        "added_p99_ms": _sub(t["lat_p99_ms"], d["lat_p99_ms"]),
                        "added_ttft_p50_ms": _sub(t["ttft_p50_ms"], d["ttft_p50_ms"]),
                        "through_rps": t["rps"], "direct_rps": d["rps"],
                        "router_cpu_us_per_req": t["router_cpu_us_per_req"],
                        "router_core_pct": t["router_core_pct"]})
    return out


def targets(rows: list[dict]) -> list[dict]:
    def get(mode: str, c: int, path: str, k: str):
        r = _find(rows, mode, c, path)
        return None if r is None else r[k]

    checks = [
        ("added p50 latency, non-streaming, c=1", "≤ 1 ms",
         _sub(get("unary", 1, "through", "lat_p50_ms"), get("unary", 1, "direct", "lat_p50_ms")),
         lambda v: v <= TARGETS["added_p50_ms_c1_unary"], "ms"),
        ("added p50 TTFT, streaming, c=1", "≤ 1 ms",
         _sub(get("stream", 1, "through", "ttft_p50_ms"), get("stream", 1, "direct", "ttft_p50_ms")),
         lambda v: v <= TARGETS["added_ttft_p50_ms_c1_stream"], "ms"),
        ("non-streaming req/s through the router, c=64", "≥ 2,000/s", get("unary", 64, "through", "rps"),
         lambda v: v >= TARGETS["rps_c64_unary"], "/s"),
        ("streams/s through the router, c=64", "≥ 1,000/s", get("stream", 64, "through", "rps"),
         lambda v: v >= TARGETS["rps_c64_stream"], "/s"),
    ]
    return [{"target": name, "goal": goal, "measured": v, "unit": unit,
             "met": None if v is None else bool(ok(v))} for name, goal, v, ok, unit in checks]


def _f(v, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"


def _inline(d: dict[str, str], n: int = 6) -> str:
    return ", ".join(f"{k} {v}" for k, v in list(d.items())[:n])


def _split(r: dict, a: str, b: str | None) -> str:
    x = r.get(f"router_{a}_us_per_req")
    if x is None:
        return "-"
    y = r[f"router_{b}_us_per_req"] if b else r["router_cpu_us_per_req"] - x
    return f"{x:.0f}/{y:.0f}"


def render(res: dict) -> str:
    L = []
    cfg = res["config"]
    L.append(f"\ntokenmill gateway benchmark — {cfg['cpu']}, Python {cfg['python']}, {cfg['seconds']} s per point "
             f"(+{cfg['warmup']} s warm-up), router on core {cfg['router_core']}, load+upstream on core "
             f"{cfg['load_core']}")
    hdr = (f"{'mode':7}{'conc':>5} {'path':8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'TTFT p50':>10}{'TTFT p99':>10}"
           f"{'errors':>7}{'router µs/req':>14}{'usr/sys':>12}{'loop/other':>12}{'router core':>12}"
           f"{'core0 other':>12}{'core1':>7}")
    L.append(hdr)
    L.append("-" * len(hdr))
    for r in res["points"]:
        L.append(f"{r['mode']:7}{r['concurrency']:>5} {r['path']:8}{_f(r['rps'], 0):>10}{_f(r['lat_p50_ms'], 3):>9}"
                 f"{_f(r['lat_p99_ms'], 3):>9}{_f(r['ttft_p50_ms'], 3):>10}{_f(r['ttft_p99_ms'], 3):>10}"
                 f"{r['errors']:>7}{_f(r['router_cpu_us_per_req'], 0):>14}{_split(r, 'user', 'sys'):>12}"
                 f"{_split(r, 'loop_thread', None):>12}"
                 f"{_f(r['router_core_pct'], 0) + '%':>12}{_f(r['core0_other_pct'], 0) + '%':>12}"
                 f"{_f(r['core1_pct'], 0) + '%':>7}")
    noisy = [r for r in res["points"] if r["path"] == "through" and (r["core0_other_pct"] or 0) > 5]
    if noisy:
        L.append(f"NOTE: other processes used >5% of the router's core during {len(noisy)} THROUGH point(s) "
                 f"(max {max(r['core0_other_pct'] for r in noisy)}%): those numbers are pessimistic.")
    L.append("\nwhat the router adds (THROUGH - DIRECT)")
    hdr = f"{'mode':7}{'conc':>5}{'+p50 ms':>10}{'+p99 ms':>10}{'+TTFT p50':>11}{'through/direct req/s':>26}"
    L.append(hdr)
    L.append("-" * len(hdr))
    for a in res["added"]:
        ratio = f"{_f(a['through_rps'], 0)} / {_f(a['direct_rps'], 0)}"
        L.append(f"{a['mode']:7}{a['concurrency']:>5}{_f(a['added_p50_ms'], 3):>10}{_f(a['added_p99_ms'], 3):>10}"
                 f"{_f(a['added_ttft_p50_ms'], 3):>11}{ratio:>26}")
    L.append("\ntargets")
    for t in res["targets"]:
        verdict = {True: "MET", False: "MISSED", None: "n/a"}[t["met"]]
        L.append(f"  {verdict:7}{t['target']}: {_f(t['measured'], 3)} {t['unit']} (goal {t['goal']})")
    L.append("\nmetering: GET /admin/usage?group_by=model")
    for u in res["usage_by_model"]:
        L.append(f"  {u['group']}: requests={u['requests']} failed={u['failed']} prompt_tokens={u['prompt_tokens']} "
                 f"completion_tokens={u['completion_tokens']} charged_nano={u['charged_nano']}")
    L.append(f"  served through the router (loadgen ok, warm-ups included): {res['through_ok_total']} -> "
             f"{'all metered' if res['metering_ok'] else 'MISMATCH'}")
    L.append(f"dynamic pricing {cfg['pricing']}: {res['price_changes']} price changes during the run")
    L.append(f"heartbeats: {res['heartbeats']['sent']} sent, {res['heartbeats']['errors']} failed; "
             f"router RSS at end {cfg['router_rss_mib_end']} MiB")
    L.append(f"run valid (0 errors, all metered, heartbeats ok): {res['valid']}")
    if res.get("profile"):
        for mode, prof in res["profile"].items():
            L.append(f"\nrouter profile, {mode} (py-spy, own time, all threads)")
            if "error" in prof:
                L.append(f"  {prof['error']}")
                continue
            L.append(f"  {prof['samples']} samples, {prof['rps_under_profiler']} req/s under the profiler; "
                     f"raw stacks: {prof['raw_file']}")
            L.append(f"  by thread: {_inline(prof['threads'])}")
            L.append(f"  own time by package: {_inline(prof['packages'], 10)}")
            for i, t in enumerate(prof["top"], 1):
                L.append(f"  {i:>2}. {t['pct']:5.1f}%  {t['function']}")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="measured window per point (default 5)")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up before each window (default 1)")
    ap.add_argument("--concurrency", type=lambda s: tuple(int(x) for x in s.split(",")), default=CONCURRENCY,
                    help="comma-separated (default 1,16,64)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 s per point, 0.3 s warm-up")
    ap.add_argument("--no-include-usage", action="store_true",
                    help="clients do not ask for stream usage (the router then rewrites the body)")
    ap.add_argument("--token-interval-ms", type=float, default=0.0, help="fake upstream pause between events")
    ap.add_argument("--profile", action="store_true", help="then py-spy the router under load, per mode")
    ap.add_argument("--engine-tls", action="store_true",
                    help="the router reaches the engine over TLS pinned to its certificate (DIRECT stays plain)")
    ap.add_argument("--profile-concurrency", type=lambda s: tuple(int(x) for x in s.split(",")), default=(1, 64),
                    help="concurrency levels to profile (default 1,64)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    ap.add_argument("--pricing", choices=("on", "off", "busy"), default="on",
                    help="dynamic pricing as configured by default (on), off, or recomputed every second (busy)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir (ledger, router log)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup = 1.0, 0.3

    def on_term(_sig, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    bench = Bench(args)
    try:
        res = asyncio.run(bench.run())
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        bench.close()
    print(render(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nJSON: {args.out}")
    return 0 if res["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
