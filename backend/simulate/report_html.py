"""report.html: one self-contained page (no script, nothing fetched) with the plan, the headline
figures, the charts inline and the tables behind them."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from backend.simulate.render_format import margin, per_day, percent, plan_line, usd, utc
from backend.simulate.result import TOTAL, DayModelRow, SimResult

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif;
       color: #1f2328; background: #f6f8fa; margin: 0; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
p.plan { color: #656d76; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 14px; min-width: 120px; }
.card .k { color: #656d76; font-size: 12px; }
.card .v { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.neg { color: #cf222e; } .pos { color: #1a7f37; }
figure { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; margin: 14px 0; padding: 4px; }
figure svg { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; background: #fff; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #e7e9ec; padding: 4px 10px; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; } td.l, th.l { text-align: left; } tr.total td { font-weight: 600; }
ul { padding-left: 20px; }
"""


def _money_class(nano: int) -> str:
    return "neg" if nano < 0 else "pos" if nano > 0 else ""


def _card(key: str, value: str, cls: str = "") -> str:
    return f'<div class="card"><div class="k">{escape(key)}</div><div class="v {cls}">{escape(value)}</div></div>'


def _table(head: Sequence[str], rows: Sequence[tuple[Sequence[str], str]], left: int = 1) -> str:
    """Rows of (cells, row class); the first `left` columns are text (left-aligned)."""
    th = "".join(f'<th class="{"l" if i < left else ""}">{escape(h)}</th>' for i, h in enumerate(head))
    body = []
    for cells, cls in rows:
        tds = "".join(f'<td class="{"l" if i < left else ""}">{escape(c)}</td>' for i, c in enumerate(cells))
        body.append(f'<tr class="{cls}">{tds}</tr>')
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figures(r: DayModelRow) -> list[str]:
    return [f"{r.requests:,}", f"{r.failed:,}", f"{r.tokens:,}", percent(r.utilization), usd(r.revenue_nano),
            usd(r.gpu_cost_nano), usd(r.payouts_nano), usd(r.profit_nano), margin(r.margin_bps)]


FIGURE_HEAD = ("Requests", "Failed", "Tokens", "Util", "Revenue", "GPU cost", "Payouts", "Profit", "Margin")


def report_page(result: SimResult, svgs: Sequence[str]) -> str:
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>tokenmill simulation</title>", f"<style>{STYLE}</style></head><body><main>",
             "<h1>tokenmill simulation</h1>", f'<p class="plan">{escape(plan_line(result))}</p>']
    if result.totals:
        t = result.grand_total
        daily = per_day(t.profit_nano, result.start_us, result.end_us)
        parts.append('<div class="cards">' + "".join([
            _card("Profit", usd(t.profit_nano), _money_class(t.profit_nano)),
            _card("Profit per day", usd(daily), _money_class(daily)),
            _card("Margin", margin(t.margin_bps), _money_class(t.margin_bps or 0)),
            _card("Revenue", usd(t.revenue_nano)),
            _card("GPU cost", usd(t.gpu_cost_nano)),
            _card("Host payouts", usd(t.payouts_nano)),
            _card("Requests served", f"{t.requests - t.failed:,}"),
            _card("Utilization", percent(t.utilization)),
        ]) + "</div>")
    parts += [f"<figure>{svg}</figure>" for svg in svgs]
    if result.totals:
        rows = [([("all models" if r.model == TOTAL else r.model), *_figures(r)],
                 "total" if r.model == TOTAL else "") for r in result.totals]
        parts += ["<h2>Totals</h2>", _table(("Model", *FIGURE_HEAD), rows)]
    if result.break_even:
        rows = [([b.model, f"{b.gpu_count}x {b.gpu_name} ({b.provider})", usd(b.cost_per_hour_nano),
                  usd(b.revenue_per_hour_full_nano), "never" if b.break_even is None else percent(b.break_even),
                  percent(b.utilization)], "") for b in result.break_even]
        parts += ["<h2>Break-even utilization</h2>",
                  _table(("Model", "Hosts", "Cost/h", "Revenue/h at full", "Break-even", "Reached"), rows, 2)]
    if result.days:
        rows = [([r.day, "all models" if r.model == TOTAL else r.model, *_figures(r)],
                 "total" if r.model == TOTAL else "") for r in result.days]
        parts += ["<h2>Per day and model (UTC)</h2>", _table(("Day", "Model", *FIGURE_HEAD), rows, 2)]
    if result.decisions:
        rows = [([utc(d.at_us), d.kind, d.subject, d.message], "")
                for d in sorted(result.decisions, key=lambda d: d.at_us)]
        parts += [f"<h2>Scaling decisions ({len(result.decisions)})</h2>",
                  _table(("When", "Kind", "Subject", "Reason"), rows, 4)]
    if result.notes:
        parts += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in result.notes) + "</ul>"]
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
