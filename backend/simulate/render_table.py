"""The simulation's table, as the terminal shows it: per day and model, totals, break-even, decisions, notes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from backend.simulate.render_format import margin, per_day, per_mtok, percent, plan_line, usd, utc
from backend.simulate.result import TOTAL, DayModelRow, SimResult

FIRST_DECISIONS = 10


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    right: bool = True  # numbers line up on the right
    drop: int = 0  # when the table is too wide, columns with the highest `drop` go first (0: never)


def _table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int,
           rules_after: Sequence[int] = ()) -> list[str]:
    """Aligned text columns, two spaces apart; the droppable ones leave (highest first) until it fits."""
    keep = list(range(len(columns)))

    def widths() -> dict[int, int]:
        return {i: max([len(columns[i].title)] + [len(r[i]) for r in rows]) for i in keep}

    while sum(widths().values()) + 2 * (len(keep) - 1) > width:
        droppable = [i for i in keep if columns[i].drop]
        if not droppable:
            break
        keep.remove(max(droppable, key=lambda i: columns[i].drop))
    w = widths()

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cells[i].rjust(w[i]) if columns[i].right else cells[i].ljust(w[i]) for i in keep).rstrip()

    total_w = sum(w.values()) + 2 * (len(keep) - 1)
    out = [line([c.title for c in columns]), "-" * total_w]
    for n, r in enumerate(rows):
        out.append(line(r))
        if n in rules_after:
            out.append("-" * total_w)
    return out


_MONEY_COLUMNS = [Column("Requests"), Column("Failed", drop=3), Column("Tokens", drop=2), Column("Util"),
                  Column("Revenue"), Column("GPU cost"), Column("Payouts", drop=1), Column("Profit"),
                  Column("Margin")]


def _figures(r: DayModelRow) -> list[str]:
    return [f"{r.requests:,}", f"{r.failed:,}", f"{r.tokens:,}", percent(r.utilization), usd(r.revenue_nano),
            usd(r.gpu_cost_nano), usd(r.payouts_nano), usd(r.profit_nano), margin(r.margin_bps)]


def _label(model: str) -> str:
    return "all models" if model == TOTAL else model


def _days(result: SimResult, width: int) -> list[str]:
    columns = [Column("Day", right=False), Column("Model", right=False), *_MONEY_COLUMNS]
    rows: list[list[str]] = []
    rules: list[int] = []
    n_models = len({r.model for r in result.days if r.model != TOTAL})
    last_day = None
    for r in result.days:
        if r.model == TOTAL and n_models <= 1:
            continue  # one model: its day total says the same again
        if last_day is not None and r.day != last_day and n_models > 1:
            rules.append(len(rows) - 1)  # a rule between days when each has several rows
        rows.append([r.day if r.day != last_day else "", _label(r.model), *_figures(r)])
        last_day = r.day
    return _table(columns, rows, width, rules)


def _totals(result: SimResult, width: int) -> list[str]:
    columns = [Column("Model", right=False), *_MONEY_COLUMNS]
    rows = [[_label(r.model), *_figures(r)] for r in result.totals
            if not (r.model == TOTAL and len(result.totals) == 2)]  # one model: the TOTAL repeats it
    return _table(columns, rows, width, [len(rows) - 2] if len(rows) > 1 else [])


def _break_even(result: SimResult, width: int) -> list[str]:
    columns = [Column("Model", right=False), Column("Hosts", right=False), Column("Cost/h"),
               Column("Tokens/s at full", drop=2), Column("Revenue/h at full"), Column("Break-even"),
               Column("Reached")]
    rows = []
    for b in result.break_even:
        hosts = f"{b.gpu_count}x {b.gpu_name} ({b.provider})"
        rows.append([b.model, hosts, usd(b.cost_per_hour_nano), f"{b.tokens_per_s_full:,.0f}",
                     usd(b.revenue_per_hour_full_nano),
                     "never" if b.break_even is None else percent(b.break_even), percent(b.utilization)])
    return _table(columns, rows, width)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.splitlines())  # a reason's newlines would break the table's lines
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _decisions(result: SimResult, width: int) -> list[str]:
    counts = Counter(d.kind for d in result.decisions)
    if not counts:
        return ["No scaling decisions."]
    by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    out = [_clip(f"{len(result.decisions)} decisions: {by_kind}", width)]
    shown = sorted(result.decisions, key=lambda d: d.at_us)[:FIRST_DECISIONS]
    if len(result.decisions) > len(shown):
        out.append(f"The first {len(shown)}:")
    kind_w = max(len(d.kind) for d in shown)
    subject_w = max(len(d.subject) for d in shown)
    for d in shown:
        out.append(_clip(f"  {utc(d.at_us)}  {d.kind.ljust(kind_w)}  {d.subject.ljust(subject_w)}  {d.message}",
                         width))
    return out


def _headline(result: SimResult) -> list[str]:
    if not result.totals:
        return ["No figures: the run produced no totals."]
    t = result.grand_total
    daily = per_day(t.profit_nano, result.start_us, result.end_us)
    served = t.requests - t.failed
    line = (f"Profit {usd(t.profit_nano)} ({usd(daily)}/day, margin {margin(t.margin_bps)}) on revenue "
            f"{usd(t.revenue_nano)}; GPU cost {usd(t.gpu_cost_nano)}; host payouts {usd(t.payouts_nano)}; "
            f"{served:,} requests served, {t.failed:,} failed; utilization {percent(t.utilization)}.")
    prices = f"{result.price_changes} price change{'s' if result.price_changes != 1 else ''}"
    mix = (f"mean request {result.mean_prompt_tokens:,.0f} prompt + {result.mean_completion_tokens:,.0f} "
           "completion tokens")
    return [line, f"{prices}; {mix}."]


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    lines, cur = [], ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = indent + word
        else:
            cur = f"{cur} {word}" if cur else word
    return [*lines, cur] if cur else lines


def _section(title: str, body: list[str]) -> list[str]:
    return ["", title, *body]


def render_table(result: SimResult, *, width: int = 120) -> str:
    """Everything a person reads after `tokenmill simulate`, as plain text no wider than `width`
    (where the columns that must stay allow it)."""
    width = max(width, 40)
    out = _wrap("Simulated " + plan_line(result), width, "  ")
    for line in _headline(result):
        out += _wrap(line, width, "  ")
    out += _section("Per day and model (UTC days)", _days(result, width) if result.days else ["No days."])
    out += _section("Totals", _totals(result, width) if result.totals else ["No totals."])
    out += _section("Break-even utilization (one replica on its hosts, at the prices charged)",
                    _break_even(result, width) if result.break_even else ["No hosts served."])
    out += _section("Scaling decisions", _decisions(result, width))
    if result.notes:
        out += _section("Notes", [line for n in result.notes for line in _wrap("- " + n, width, "  ")])
    prices = _price_summary(result)
    if prices:
        out += _section("Completion prices (per million tokens, per hour)", prices)
    return "\n".join(out) + "\n"


def _price_summary(result: SimResult) -> list[str]:
    """Per model: the completion price it started at, its range and where it ended."""
    out = []
    by_model: dict[str, list[int]] = {}
    for h in sorted(result.hours, key=lambda h: h.start_us):
        if h.model != TOTAL and h.price_completion_per_mtok > 0:
            by_model.setdefault(h.model, []).append(h.price_completion_per_mtok)
    for model, prices in by_model.items():
        out.append(f"  {model}: started {per_mtok(prices[0])}, ranged {per_mtok(min(prices))} to "
                   f"{per_mtok(max(prices))}, ended {per_mtok(prices[-1])}")
    return out
