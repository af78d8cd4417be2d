"""Benchmark: how fast `tokenmill simulate` runs a month of a fleet (issue 13: 30 days of a 10-host
fleet at 50 requests/s on average in under 60 s on a 2-core machine).

    .venv/bin/python bench/simulate/run.py [--days 30] [--fleet ...] [--rate 50] [--autoscale]

Prints the wall time, simulated requests per second of wall time, and the run's totals. The same
code path as the command: backend.simulate.run.run_simulation (production services on a virtual
clock, a temporary SQLite ledger).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.catalogue import load_catalogue
from backend.money import format_usd
from backend.settings import Settings
from backend.simulate.plan import SimPlan, parse_fleet
from backend.simulate.run import run_simulation

FLEET = "rtx4090:runpod:6:llama-3.1-8b-instruct,rtx3090:vast:4:qwen2.5-7b-instruct"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--fleet", default=FLEET)
    ap.add_argument("--rate", type=float, default=50.0, help="mean requests/s")
    ap.add_argument("--autoscale", action="store_true", help="with the autoscaler on (default: the fleet as given)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    catalogue = load_catalogue(None)
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data))
        plan = SimPlan(days=args.days, fleet=parse_fleet(args.fleet, catalogue), rate_rps=args.rate,
                       autoscale=args.autoscale)
        started = time.perf_counter()
        result = run_simulation(plan, settings, catalogue)
        wall = time.perf_counter() - started
    total = result.grand_total
    print(f"{args.days:g} simulated days, fleet {args.fleet}, {args.rate:g} requests/s on average"
          f"{', autoscaler on' if args.autoscale else ''}")
    print(f"wall time: {wall:.1f} s")
    print(f"simulated requests: {result.simulated_requests:,} ({result.simulated_requests / wall:,.0f} per second "
          f"of wall time)")
    print(f"simulated time per second of wall time: {args.days * 86400 / wall:,.0f} s")
    print(f"price changes: {result.price_changes:,}; scaling decisions: {len(result.decisions)}")
    print(f"revenue {format_usd(total.revenue_nano, places=2)}, GPU cost {format_usd(total.gpu_cost_nano, places=2)}, "
          f"profit {format_usd(total.profit_nano, places=2)}, utilization {total.utilization or 0:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
