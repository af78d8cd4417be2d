"""Closed-loop load generator for OpenAI-compatible chat completions (gateway benchmark).

`--concurrency` workers share one pooled aiohttp session (keep-alive) on uvloop; each sends a
request, reads the whole response, and sends the next. After `--warmup` seconds (connections
open, caches warm) the measured window runs for `--seconds` (or until `--requests` have
completed in it). Latency: send -> full response read. TTFT (streams): send -> the first
received bytes holding a content chunk. Prints one JSON line.

A response counts as an error if its status is not 200, the connection breaks, or (streams)
it is not exactly 20 content chunks + usage (when asked) + `data: [DONE]`; (non-streaming) it
has no `usage`. A valid run has errors == 0.

`--watch-pid PID` (repeatable) reports that process's CPU seconds (utime+stime from
/proc/PID/stat) over exactly the measured window, e.g. the router's.

    .venv/bin/python bench/gateway/loadgen.py --url http://127.0.0.1:8001 --concurrency 16 --seconds 5
    .venv/bin/python bench/gateway/loadgen.py --url http://127.0.0.1:8640 --key tm-... --stream --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import aiohttp

CHUNKS = 20
_TICK = os.sysconf("SC_CLK_TCK")


def _times(path: str) -> tuple[float, float] | None:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK  # utime, stime: fields 14 and 15 of proc(5)


def proc_cpu_s(pid: int) -> dict[str, float] | None:
    """CPU seconds of a process: total (all threads), user, system, and its main thread's (the
    event loop of an asyncio server), or None if it is gone."""
    whole = _times(f"/proc/{pid}/stat")
    main = _times(f"/proc/{pid}/task/{pid}/stat")
    if whole is None:
        return None
    return {"total": whole[0] + whole[1], "user": whole[0], "sys": whole[1],
            "main_thread": main[0] + main[1] if main else 0.0}


def cores_busy_s() -> dict[str, tuple[float, float]]:
    """Per CPU: (busy seconds, steal seconds) since boot, from /proc/stat."""
    out = {}
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"cpu") and line[3:4].isdigit():
                    name, *v = line.split()
                    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in v[:8])
                    out[name.decode()] = ((user + nice + system + irq + softirq) / _TICK, steal / _TICK)
    except OSError:
        pass
    return out


def pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


def request_body(model: str, stream: bool, include_usage: bool, max_tokens: int) -> bytes:
    doc: dict = {"model": model, "max_tokens": max_tokens,
                 "messages": [{"role": "user", "content": "Say hello in twenty tokens, please."}]}
    if stream:
        doc["stream"] = True
        if include_usage:
            doc["stream_options"] = {"include_usage": True}
    return json.dumps(doc, separators=(",", ":")).encode()


def check_stream(data: bytes, include_usage: bool) -> str | None:
    """None if the SSE body is complete and well formed, else why not."""
    events = [e for e in data.split(b"\n\n") if e]
    if not events or events[-1] != b"data: [DONE]":
        return "stream_no_done"
    if any(b'"error"' in e[:16] for e in events):
        return "stream_error_event"
    usage = sum(1 for e in events if b'"choices":[]' in e)
    content = len(events) - 1 - usage
    if content != CHUNKS:
        return f"stream_{content}_chunks"
    if include_usage and usage != 1:
        return "stream_no_usage"
    return None


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.lat: list[float] = []
        self.ttft: list[float] = []
        self.ok_total = 0
        self.errors_total = 0
        self.errors_window = 0
        self.error_kinds: dict[str, int] = {}
        self.in_window = 0

    def error(self, kind: str) -> None:
        self.errors_total += 1
        if self.measuring:
            self.errors_window += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def worker(session: aiohttp.ClientSession, url: str, headers: dict, body: bytes, stream: bool,
                 include_usage: bool, stats: Stats, stop: asyncio.Event, done_one) -> None:
    clock = time.perf_counter
    while not stop.is_set():
        t0 = clock()
        first = None
        err = None
        try:
            async with session.post(url, data=body, headers=headers) as r:
                if r.status != 200:
                    await r.read()
                    err = f"http_{r.status}"
                elif stream:
                    parts = []
                    async for chunk in r.content.iter_any():
                        if first is None and b'"content"' in chunk:
                            first = clock()
                        parts.append(chunk)
                    err = check_stream(b"".join(parts), include_usage)
                else:
                    data = await r.read()
                    if b'"usage"' not in data:
                        err = "no_usage"
        except (aiohttp.ClientError, TimeoutError) as exc:
            err = type(exc).__name__
        t1 = clock()
        if err is not None:
            stats.error(err)
            continue
        stats.ok_total += 1
        if stats.measuring:
            stats.lat.append(t1 - t0)
            if first is not None:
                stats.ttft.append(first - t0)
            stats.in_window += 1
            done_one()


async def run(args: argparse.Namespace) -> dict:
    url = args.url.rstrip("/") + "/v1/chat/completions"
    headers = {"Content-Type": "application/json"}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"
    body = request_body(args.model, args.stream, not args.no_include_usage, args.max_tokens)
    stats = Stats()
    stop = asyncio.Event()
    window_done = asyncio.Event()
    target = args.requests

    def done_one() -> None:
        if target and stats.in_window >= target:
            stop.set()
            window_done.set()

    connector = aiohttp.TCPConnector(limit=args.concurrency, keepalive_timeout=60, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                     skip_auto_headers=("User-Agent",)) as session:
        tasks = [asyncio.create_task(worker(session, url, headers, body, args.stream, not args.no_include_usage,
                                            stats, stop, done_one)) for _ in range(args.concurrency)]
        try:
            await asyncio.sleep(args.warmup)
            cpu0 = {pid: proc_cpu_s(pid) for pid in args.watch_pid}
            self0 = os.times()
            cores0 = cores_busy_s()
            t0 = time.perf_counter()
            stats.measuring = True
            if target:
                await asyncio.wait_for(window_done.wait(), args.timeout + target)  # bounded
            else:
                await asyncio.sleep(args.seconds)
            t1 = time.perf_counter()
            stats.measuring = False
            cpu1 = {pid: proc_cpu_s(pid) for pid in args.watch_pid}
            self1 = os.times()
            cores1 = cores_busy_s()
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), args.timeout + 5)
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    window = t1 - t0
    lat = sorted(stats.lat)
    ttft = sorted(stats.ttft)
    ms = 1000.0

    def r(v: float | None, scale: float = ms) -> float | None:
        return None if v is None else round(v * scale, 3)

    cpu = {}
    for pid in args.watch_pid:
        a, b = cpu0.get(pid), cpu1.get(pid)
        cpu[str(pid)] = None if a is None or b is None else {k: round(b[k] - a[k], 3) for k in a}
    return {
        "url": url, "mode": "stream" if args.stream else "unary", "concurrency": args.concurrency,
        "window_s": round(window, 3), "requests": stats.in_window,
        "rps": round(stats.in_window / window, 1) if window > 0 else None,
        "lat_p50_ms": r(pct(lat, 50)), "lat_p99_ms": r(pct(lat, 99)),
        "lat_mean_ms": r(sum(lat) / len(lat)) if lat else None,
        "ttft_p50_ms": r(pct(ttft, 50)), "ttft_p99_ms": r(pct(ttft, 99)),
        "errors": stats.errors_total, "errors_in_window": stats.errors_window, "error_kinds": stats.error_kinds,
        "ok_total": stats.ok_total, "cpu_s": cpu,
        "cores_busy_s": {c: round(cores1[c][0] - cores0[c][0], 3) for c in cores1 if c in cores0},
        "cores_steal_s": {c: round(cores1[c][1] - cores0[c][1], 3) for c in cores1 if c in cores0},
        "loadgen_cpu_s": round((self1.user + self1.system) - (self0.user + self0.system), 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="base URL (…/v1/chat/completions is appended)")
    ap.add_argument("--key", default="", help="API key (Bearer); none for a bare engine")
    ap.add_argument("--model", default="llama-3.1-8b-instruct")
    ap.add_argument("--concurrency", type=int, default=1)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--seconds", type=float, default=5.0, help="measured window (default 5)")
    g.add_argument("--requests", type=int, default=0, help="measure this many completed requests instead")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load before the window (default 1)")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--no-include-usage", action="store_true",
                    help="streams: do not send stream_options.include_usage (the router then adds it)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    ap.add_argument("--watch-pid", type=int, action="append", default=[], help="report this process's CPU")
    args = ap.parse_args(argv)
    if args.concurrency < 1:
        ap.error("--concurrency must be at least 1")
    import uvloop

    result = uvloop.run(run(args))
    print(json.dumps(result), flush=True)
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
