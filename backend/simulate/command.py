"""`tokenmill simulate`: the command line of the simulator (backend/simulate/run.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import sys
from pathlib import Path

from backend.catalogue import CatalogueError, load_catalogue
from backend.field_errors import FieldError
from backend.settings import Settings
from backend.simulate.plan import DEFAULT_FLEET, DEMAND_PROFILES, SimPlan, parse_fleet

USAGE_EXAMPLE = 'tokenmill simulate --days 7 --fleet "rtx4090:vast:2,a100-80gb:runpod:1" --demand business --out sim/'


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate", help="days of the business in seconds: profit before spending (no GPU, no account)",
        description="Run the production pricing engine, autoscaler, replica choice and ledger on a virtual clock "
                    "against simulated engines and clients, and report per day and model: requests, tokens, "
                    "utilization, revenue, GPU cost, host payouts, profit, margin; break-even utilization; the "
                    f"scaling decisions. Example: {USAGE_EXAMPLE}")
    p.add_argument("--days", type=float, default=7.0, help="how long to simulate (default 7)")
    p.add_argument("--models", help="comma-separated catalogue ids (default: those the fleet names, else the "
                                    "catalogue's defaults)")
    p.add_argument("--fleet", default=DEFAULT_FLEET,
                   help=f"gpu:provider:count[:model],... providers vast, runpod, lambda (their catalogue offer), "
                        f"owned, community (default {DEFAULT_FLEET})")
    p.add_argument("--demand", default="business", choices=DEMAND_PROFILES, help="the shape of a day and a week")
    p.add_argument("--rate", type=float, help="mean client requests/s at the market's middle price "
                                              "(default: --load of the starting fleet's capacity)")
    p.add_argument("--load", type=float, default=0.4, help="without --rate: demand as a share of the starting "
                                                           "fleet's capacity (default 0.4)")
    p.add_argument("--elasticity", type=float, default=1.0,
                   help="demand ~ (our price / market middle) ** -elasticity (default 1)")
    p.add_argument("--seed", type=int, default=1, help="the same seed gives the same run (default 1)")
    p.add_argument("--start", help="first day, YYYY-MM-DD (UTC; default 2026-01-05, a Monday)")
    p.add_argument("--autoscale", action=argparse.BooleanOptionalAction, default=None,
                   help="turn the autoscaler on or off (default: the settings' [autoscaler] enabled)")
    p.add_argument("--dynamic-pricing", action=argparse.BooleanOptionalAction, default=None,
                   help="turn dynamic pricing on or off (default: the settings' [pricing] enabled)")
    p.add_argument("--pin", metavar="PROMPT,COMPLETION",
                   help="pin every model's price, USD per million tokens, e.g. 0.10,0.20")
    p.add_argument("--out", type=Path, help="write days.csv, hours.csv, break_even.csv, decisions.csv, the "
                                            "charts (report.html, *.svg) and the run's ledger (ledger/) here")
    p.add_argument("--no-charts", action="store_true", help="no charts in the terminal")
    p.set_defaults(func=cmd_simulate)


def plan_from_args(args: argparse.Namespace, settings: Settings) -> SimPlan:
    catalogue = load_catalogue(settings.catalogue_dir)
    models = tuple(m.strip() for m in (args.models or "").split(",") if m.strip())
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    if args.start:
        try:
            start = dt.datetime.combine(dt.date.fromisoformat(args.start), dt.time(), tzinfo=dt.UTC)
        except ValueError:
            raise FieldError("start", f"expected YYYY-MM-DD, got {args.start!r}") from None
    pin = None
    if args.pin:
        parts = [x.strip() for x in args.pin.split(",")]
        if len(parts) != 2 or not all(parts):
            raise FieldError("pin", f"expected PROMPT,COMPLETION in USD per million tokens, got {args.pin!r}")
        pin = (parts[0], parts[1])
    if args.elasticity < 0 or args.elasticity > 10:
        raise FieldError("elasticity", f"must be 0 to 10, got {args.elasticity}")
    return SimPlan(days=args.days, models=models, fleet=parse_fleet(args.fleet, catalogue), demand=args.demand,
                   rate_rps=args.rate, load=args.load, elasticity=args.elasticity, seed=args.seed, start=start,
                   autoscale=args.autoscale, dynamic_pricing=args.dynamic_pricing, pin=pin)


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from backend.money import MoneyError
    from backend.runtime.clock import stopwatch
    from backend.simulate.charts_svg import write_charts
    from backend.simulate.render_csv import write_csv
    from backend.simulate.render_table import render_table
    from backend.simulate.render_terminal_charts import render_terminal_charts
    from backend.simulate.run import SimulationError, run_simulation

    try:
        plan = plan_from_args(args, settings)
    except (FieldError, CatalogueError) as exc:
        print(f"tokenmill simulate: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"tokenmill simulate: --out {args.out}: {exc.strerror}", file=sys.stderr)
            return 2
    # The services log their events (a rental, a price change) as they happen: in a simulation that
    # is noise over the report, which lists the decisions that matter.
    logging.basicConfig(level=logging.CRITICAL, force=True)
    tty = sys.stderr.isatty()

    def progress(fraction: float) -> None:
        if tty:
            print(f"\rsimulating: {fraction:5.1%}", end="", file=sys.stderr, flush=True)

    elapsed = stopwatch()
    try:
        result = run_simulation(plan, settings, progress=progress,
                                keep_in=args.out / "ledger" if args.out is not None else None)
    except (FieldError, SimulationError, MoneyError) as exc:
        print(f"\ntokenmill simulate: {exc}", file=sys.stderr)
        return 2
    result.wall_s = elapsed()
    if tty:
        print("\r" + " " * 30 + "\r", end="", file=sys.stderr)
    print(render_table(result), end="")
    if not args.no_charts:
        print()
        print(render_terminal_charts(result, width=min(shutil.get_terminal_size((100, 40)).columns, 160)))
    print(f"\n{result.simulated_requests:,} simulated requests in {result.wall_s:.1f} s "
          f"({result.simulated_requests / max(result.wall_s, 1e-9):,.0f} per second of wall time)")
    if args.out is not None:
        paths = write_csv(result, args.out) + write_charts(result, args.out)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0
