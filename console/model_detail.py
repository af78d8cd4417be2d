"""What the Models view shows about a model's price and its replicas: the short cells of its row
(trend mark, pinned or dynamic, have/want, the autoscaler's next move) and, in its detail, the price
now with why it moved (each factor's part), its last changes, and the autoscaler's state with its
last decisions. Everything the backend wrote in words (explanations, reasons) is shown as written,
never parsed as markup."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group
from rich.table import Table
from rich.text import Text

from backend.wire.autoscaler import AutoscalerOut, ModelScalingOut, ScalingDecisionOut
from backend.wire.pricing import ModelPricingOut, PriceChangeOut
from console.figures import NA, rate, share
from console.money import usd

TREND = {"up": "▲", "down": "▼", "flat": "="}
HISTORY_ROWS = 8  # the last changes shown in the detail, newest first
DECISION_ROWS = 5


def clock(us: int | None) -> str:
    return NA if us is None else datetime.fromtimestamp(us / 1e6, UTC).strftime("%H:%M:%S")


def when(us: int) -> str:
    # To the second: decisions and repricings can come seconds apart (`serve --local`).
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%m-%d %H:%M:%S")


def signed_usd(nano: int) -> str:
    return "+" + usd(nano) if nano > 0 else usd(nano)


def mode(p: ModelPricingOut) -> str:
    """pin: the operator fixed it; dyn: the engine prices it; list: pricing is off (list price)."""
    return "pin" if p.pinned else ("dyn" if p.dynamic else "list")


def trend_cell(p: ModelPricingOut | None) -> str:
    return NA if p is None else f"{TREND[p.trend]} {mode(p)}"


def replicas_cell(s: ModelScalingOut | None, up: int, autoscaler: bool) -> str:
    """have/want: routable replicas (+ those on their way) against the autoscaler's desired count.
    A model the autoscaler does not look after wants "-"; no autoscaler at all (an older backend): N/A."""
    if s is None:
        return f"{up}/{'-' if autoscaler else NA}"
    have = f"{s.actual}+{s.pending}" if s.pending else str(s.actual)
    return f"{have}/{s.desired}"


def next_cell(s: ModelScalingOut | None, a: AutoscalerOut | None) -> str:
    """The autoscaler's next move, short: "+1 in 2" (one more replica once 2 more decisions in a row
    want it), "-1 in 5", "+1 now", "blocked", "hold" or "off". It moves one replica per decision.
    Which move is the backend's (`next`); the counts are its streaks and delays."""
    if a is None:
        return NA
    if s is None:
        return "-"  # not a model it looks after
    if not s.enabled:
        return "off"
    if s.next == "scale_up":
        blocked = s.last_decision is not None and s.last_decision.action == "blocked"
        return "blocked" if blocked else "+1 now"
    if s.next == "scale_down":
        return "-1 now"
    if s.next == "wait_up":
        return f"+1 in {max(a.upscale_delay - s.up_streak, 1)}"
    if s.next == "wait_down":
        return f"-1 in {max(a.downscale_delay - s.down_streak, 1)}"
    return s.next  # hold, blocked, off


# ---------------------------------------------------------------------- the detail: price
def _pair(prompt: int, completion: int) -> str:
    return f"{usd(prompt)} / {usd(completion)}"


def _source(c: PriceChangeOut) -> str:
    return {"engine": "engine", "pin": "pinned", "unpin": "unpinned", "list": "list price", "start": "first price",
            "range": "range set"}.get(c.source, c.source)


def price_section(p: ModelPricingOut | None) -> Group:
    if p is None:
        return Group(Text("price: N/A (this backend has no dynamic pricing)"))
    how = ("PINNED by the operator" if p.pinned else
           "dynamic (priced by the engine)" if p.dynamic else "list price (dynamic pricing is off)")
    whose = "the operator's" if p.range_overridden else "the market's"
    lines = [
        Text(f"price now  {_pair(p.prompt_per_mtok_nano, p.completion_per_mtok_nano)} per 1M prompt / completion"
             f"  {TREND[p.trend]} {p.trend}  {how}"),
        Text(f"range      prompt {usd(p.floor_prompt_per_mtok_nano)} .. {usd(p.ceiling_prompt_per_mtok_nano)}, "
             f"completion {usd(p.floor_completion_per_mtok_nano)} .. {usd(p.ceiling_completion_per_mtok_nano)} "
             f"({whose})"
             f"  list {_pair(p.list_prompt_per_mtok_nano, p.list_completion_per_mtok_nano)}"),
        Text(f"load       {_priced_from(p)}  next repricing "
             f"{'never (not dynamic)' if p.next_update_us is None else clock(p.next_update_us) + ' UTC'}"),
    ]
    last = p.last_change
    if last is None:
        lines.append(Text("last change  none yet"))
    else:
        lines.append(Text(f"last change  {when(last.at_us)} {_source(last)}: {last.explanation or '-'}"))
        if last.factors:
            lines.append(factors_table(last))
    return Group(*lines)


def _tps(v: float | None) -> str:
    return NA if v is None else rate(v)


def _priced_from(p: ModelPricingOut) -> str:
    if p.load is None:
        return f"not priced from load yet ({p.replicas} replicas)"
    return (f"{p.load:.2f} (utilization {share(p.utilization)}, demand {_tps(p.demand_tps)} of "
            f"{_tps(p.capacity_tps)} tok/s capacity, {p.replicas} replicas)")


def factors_table(c: PriceChangeOut) -> Table:
    t = Table(box=None, padding=(0, 2), header_style="bold")
    for col, justify in (("factor", "left"), ("detail", "left"), ("prompt", "right"), ("completion", "right")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for f in c.factors:
        t.add_row(f.name, Text(f.detail), signed_usd(f.prompt_delta_nano), signed_usd(f.completion_delta_nano))
    return t


def history_table(history: list[PriceChangeOut] | None) -> Group | Table:
    """The price over the last 24 h: its range, then the last changes, newest first."""
    if history is None:
        return Group(Text("last 24 h  N/A"))
    if not history:
        return Group(Text("last 24 h  no price recorded"))
    prompts = [c.prompt_per_mtok_nano for c in history]
    completions = [c.completion_per_mtok_nano for c in history]
    head = Text(f"last 24 h  {len(history)} prices: prompt {usd(min(prompts))} .. {usd(max(prompts))}, "
                f"completion {usd(min(completions))} .. {usd(max(completions))}")
    t = Table(box=None, padding=(0, 2), header_style="bold")
    # The figures keep their width; the explanation takes what is left, cut to one line (the last
    # one is whole above). Its column may shrink: a table of columns that may not would be squeezed
    # all over, figures dropped.
    for col in ("at (UTC)", "by", "prompt", "completion"):
        t.add_column(col, no_wrap=True)
    t.add_column("why (the last change's in full above)", min_width=10)
    for c in list(reversed(history))[:HISTORY_ROWS]:
        t.add_row(when(c.at_us), _source(c), usd(c.prompt_per_mtok_nano), usd(c.completion_per_mtok_nano),
                  Text(c.explanation or "-", no_wrap=True, overflow="ellipsis"))
    return Group(head, t)


# ---------------------------------------------------------------------- the detail: autoscaler
def scaling_section(model: str, s: ModelScalingOut | None, a: AutoscalerOut | None) -> Group:
    if a is None:
        return Group(Text("autoscaler N/A (this backend has no autoscaler)"))
    if s is None:
        return Group(Text("autoscaler not looking after it (not served, none on the way, no limits set: m sets them)"))
    state = "on" if s.enabled else ("OFF for this model" if a.enabled else "OFF (the autoscaler is off altogether)")
    limits = "the operator's" if s.limits_overridden else "defaults"
    lines = [
        Text(f"autoscaler {state}  replicas have {s.actual}, want {s.desired} ({s.pending} pending, {s.draining} "
             f"draining; min {s.min_replicas}, max {s.max_replicas}: {limits})"),
        Text(f"load       {NA if s.load is None else f'{s.load:.2f}'} (utilization {share(s.utilization)}, "
             f"{s.waiting_per_replica:.1f} waiting per replica; up above {a.upper_threshold:.2f}, "
             f"down below {a.lower_threshold:.2f})"),
        Text(f"streaks    up {s.up_streak} of {a.upscale_delay}, down {s.down_streak} of {a.downscale_delay}"
             f"  next decision {clock(s.next_decision_us)}: {s.next_action}"),
    ]
    decisions = [d for d in a.recent if d.model == model]
    if s.last_decision is not None and all(d.at_us != s.last_decision.at_us for d in decisions):
        decisions.insert(0, s.last_decision)
    lines.append(decisions_table(decisions[:DECISION_ROWS]))
    return Group(*lines)


def decisions_table(decisions: list[ScalingDecisionOut]) -> Table | Text:
    if not decisions:
        return Text("decisions  none yet")
    t = Table(box=None, padding=(0, 2), header_style="bold")
    for col in ("at (UTC)", "decision", "have/want"):
        t.add_column(col, no_wrap=True)
    t.add_column("why")
    for d in decisions:
        t.add_row(when(d.at_us), d.action.replace("_", " "), f"{d.actual}/{d.desired}", Text(d.reason))
    return t
