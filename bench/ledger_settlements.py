"""Durable settlements per second on the SQLite ledger (issue: foundation).

One settlement = what a client request costs the ledger: a hold on the client's prepaid
balance, then a settle that posts part of it to revenue, pays the host its share and writes
the usage event, all made durable by the group-commit writer. Each of `concurrency` workers
loops hold -> settle -> await durability; time-to-durable runs from the hold to the moment
the settlement is on disk (WAL, synchronous=NORMAL unless --synchronous FULL).

    .venv/bin/python bench/ledger_settlements.py                 # 1, 64, 512 workers
    .venv/bin/python bench/ledger_settlements.py --concurrency 512 --seconds 10 --synchronous FULL
    .venv/bin/python bench/ledger_settlements.py --concurrency 512 --rate 5000   # open loop

Closed loop, each worker waits for its settlement to be durable before starting the next, so
by Little's law p50 is about concurrency / throughput (512 workers at 8,000/s: ~64 ms). The
open-loop mode offers a fixed arrival rate instead, which is how a router sees its clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from backend.db.engine import make_engine, migrate
from backend.ledger import chart
from backend.ledger.queries import check_invariants
from backend.ledger.service import Ledger, Usage
from backend.runtime.gc_tuning import tune_gc

CLIENTS = 1000


async def run_level(concurrency: int, seconds: float, synchronous: str, workdir: Path,
                    rate: float | None = None) -> dict:
    path = workdir / f"bench-{concurrency}-{time.monotonic_ns()}.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}", synchronous=synchronous)
    await migrate(engine)
    ledger = Ledger(engine, expiry_interval_s=0)
    await ledger.start()
    host = (await ledger.open_account(chart.host_account("bench-host"), chart.Kind.HOST_PAYABLE)).code
    clients = []
    for i in range(CLIENTS):
        code = (await ledger.open_account(chart.client_account(f"b{i}"), chart.Kind.CLIENT_PREPAID)).code
        await ledger.transfer(f"fund-{i}", chart.PAYMENT_CLEARING, code, 10**15, code="deposit")
        clients.append(code)
    batches0, ops0 = ledger.stats["batches"], ledger.stats["operations"]
    tune_gc()  # as `tokenmill serve` does once started

    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def settle_one(i: int, t0: float) -> None:
        client = clients[i % CLIENTS]
        hold, _ = ledger.reserve(client, chart.REVENUE, 2_000_000, code="usage")
        now = time.time_ns() // 1000
        _, durable = ledger.settle_nowait(
            hold.key, charged=1_234_567, host_share=987_654, host_account=host,
            usage=Usage(request_id=hold.key, client_id=client, model="llama-3.1-8b-instruct",
                        prompt_tokens=812, completion_tokens=256, price_prompt_per_mtok=50_000_000,
                        price_completion_per_mtok=80_000_000, started_us=now, finished_us=now,
                        host_id="bench-host", key_id="k"),
        )
        await durable
        latencies.append(time.perf_counter() - t0)

    async def worker(w: int) -> None:
        i = w
        while time.perf_counter() < stop_at:
            await settle_one(i, time.perf_counter())
            i += concurrency

    async def open_loop() -> None:
        # Arrivals at a fixed rate, at most `concurrency` in flight; latency counts from the
        # arrival, so time spent waiting for a free slot is included.
        slots = asyncio.Semaphore(concurrency)
        tasks = set()
        start = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) < stop_at:
            due = int((now - start) * rate)
            while n < due:
                arrival = start + n / rate
                await slots.acquire()
                task = asyncio.create_task(settle_one(n, arrival))
                task.add_done_callback(lambda _t: slots.release())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(0.0005)
        await asyncio.gather(*tasks)

    cpu0, t0 = time.process_time(), time.perf_counter()
    if rate:
        await open_loop()
    else:
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    batches = ledger.stats["batches"] - batches0
    ops = ledger.stats["operations"] - ops0
    await ledger.close()
    async with engine.connect() as conn:
        problems = await check_invariants(conn)
    await engine.dispose()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "concurrency": concurrency,
        "offered_per_s": rate or "closed loop",
        "synchronous": synchronous,
        "settlements": len(latencies),
        "seconds": round(elapsed, 3),
        "settlements_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(q[49] * 1000, 3),
        "p99_ms": round(q[98] * 1000, 3),
        "max_ms": round(latencies[-1] * 1000, 3),
        "commits": batches,
        "ops_per_commit": round(ops / batches, 1) if batches else 0,
        "cpu_s_per_1k": round(cpu / len(latencies) * 1000, 3),
        "invariants": "hold" if not problems else problems,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 512])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    ap.add_argument("--rate", type=float, help="open loop: settlements offered per second (default: closed loop)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="tm-bench-") as tmp:
        for c in args.concurrency:
            r = await run_level(c, args.seconds, args.synchronous, Path(tmp), args.rate)
            results.append(r)
            mode = f"offered {args.rate:.0f}/s" if args.rate else "closed loop"
            print(f"concurrency {c:>4} ({mode}): {r['settlements_per_s']:>6} settlements/s  "
                  f"p50 {r['p50_ms']:>7.3f} ms  p99 {r['p99_ms']:>7.3f} ms  "
                  f"({r['ops_per_commit']} ops/commit, {r['cpu_s_per_1k']} CPU-s per 1k, "
                  f"invariants {r['invariants']})", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
