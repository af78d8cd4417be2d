"""The simulation's figures as CSV files a spreadsheet opens: money as exact decimal USD strings.

days.csv: one row per day and model, then per day all models ("total"), then the run's totals (day
"total"); hours.csv: one row per hour and model (model "total": the fleet); break_even.csv; decisions.csv.
"""

from __future__ import annotations

import csv
from pathlib import Path

from backend.runtime.clock import from_us
from backend.simulate.render_format import usd_decimal
from backend.simulate.result import BreakEven, DayModelRow, Decision, HourPoint, SimResult

DAY_COLUMNS = ("day", "model", "requests", "failed", "prompt_tokens", "completion_tokens", "tokens",
               "utilization", "replica_hours", "revenue_usd", "gpu_cost_usd", "payouts_usd", "profit_usd",
               "margin_bps")
HOUR_COLUMNS = ("hour_utc", "model", "requests", "revenue_usd", "gpu_cost_usd", "payouts_usd", "profit_usd",
                "utilization", "replicas", "price_prompt_usd_per_mtok", "price_completion_usd_per_mtok")
BREAK_EVEN_COLUMNS = ("model", "gpu", "gpu_name", "gpu_count", "provider", "cost_per_hour_usd",
                      "tokens_per_s_full", "revenue_per_hour_full_usd", "break_even_utilization",
                      "utilization_reached")
DECISION_COLUMNS = ("at_utc", "kind", "subject", "message")


def _share(value: float | None) -> str:
    """A utilization (a share, not money): six decimals, empty when there was nothing to measure."""
    return "" if value is None else f"{value:.6f}"


def _iso(at_us: int) -> str:
    return from_us(at_us).strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def _day(r: DayModelRow) -> list[object]:
    return [r.day, r.model, r.requests, r.failed, r.prompt_tokens, r.completion_tokens, r.tokens,
            _share(r.utilization), f"{r.replica_hours:.4f}", usd_decimal(r.revenue_nano),
            usd_decimal(r.gpu_cost_nano), usd_decimal(r.payouts_nano), usd_decimal(r.profit_nano),
            "" if r.margin_bps is None else r.margin_bps]


def _hour(h: HourPoint) -> list[object]:
    return [_iso(h.start_us), h.model, h.requests, usd_decimal(h.revenue_nano), usd_decimal(h.gpu_cost_nano),
            usd_decimal(h.payouts_nano), usd_decimal(h.profit_nano), _share(h.utilization), f"{h.replicas:.4f}",
            usd_decimal(h.price_prompt_per_mtok), usd_decimal(h.price_completion_per_mtok)]


def _break_even(b: BreakEven) -> list[object]:
    return [b.model, b.gpu, b.gpu_name, b.gpu_count, b.provider, usd_decimal(b.cost_per_hour_nano),
            f"{b.tokens_per_s_full:.1f}", usd_decimal(b.revenue_per_hour_full_nano), _share(b.break_even),
            _share(b.utilization)]


def _decision(d: Decision) -> list[object]:
    return [_iso(d.at_us), d.kind, d.subject, d.message]


def _write(path: Path, header: tuple[str, ...], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_csv(result: SimResult, out_dir: Path) -> list[Path]:
    """Write days.csv, hours.csv, break_even.csv and decisions.csv into `out_dir` (made if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        _write(out_dir / "days.csv", DAY_COLUMNS, [_day(r) for r in [*result.days, *result.totals]]),
        _write(out_dir / "hours.csv", HOUR_COLUMNS, [_hour(h) for h in result.hours]),
        _write(out_dir / "break_even.csv", BREAK_EVEN_COLUMNS, [_break_even(b) for b in result.break_even]),
        _write(out_dir / "decisions.csv", DECISION_COLUMNS,
               [_decision(d) for d in sorted(result.decisions, key=lambda d: d.at_us)]),
    ]
