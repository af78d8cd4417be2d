"""`tokenmill-host earnings`, `models` and `serve-models`: the host's own figures from the router (GET
/hosts/{id}/earnings and /hosts/{id}/market with the host token, read from the agent's config as `run`
reads it), and the models it serves changed through the local agent's control API.

serve-models asks the router's market first: a model the catalogue does not have, this host's GPUs
cannot run or the operator does not sell is refused there, naming why, before any engine stops. The
agent then stops the engines of models no longer wanted, starts the new ones (vLLM with the specs the
market gives for these GPUs), and its next heartbeat, sent at once, reports the new set: the router
routes a new model here once its hardware check passed.

Money comes as decimal strings (never floats) and is shown as dollars and cents; prices per million
tokens keep every digit the router gives."""

from __future__ import annotations

import sys
from decimal import ROUND_HALF_UP, Decimal

import httpx
import msgspec

from hostkit.config import AgentConfig
from hostkit.control_api import AgentStatus
from hostkit.protocol import Error, HostEarnings, HostMarket, MarketModel, PingReply


class SelfServiceError(Exception):
    """Something the host must hear about; the message says what and what to do."""


class _Envelope(msgspec.Struct):
    error: Error


def _get(config: AgentConfig, path: str, kind: type, params: dict[str, object] | None = None):
    url = config.router_url + path
    headers = {"Authorization": f"Bearer {config.host_token.get_secret_value()}"}
    try:
        resp = httpx.get(url, params=params, headers=headers, timeout=config.router_timeout_s)
    except httpx.HTTPError as exc:
        raise SelfServiceError(f"the router at {config.router_url} does not answer ({type(exc).__name__})") from None
    if resp.status_code != 200:
        try:
            err = msgspec.json.decode(resp.content, type=_Envelope).error
            why = f"{err.message} ({err.code})"
        except msgspec.MsgspecError:
            why = resp.text[:200]
        raise SelfServiceError(f"the router refused GET {path}: HTTP {resp.status_code}: {why}")
    try:
        return msgspec.json.decode(resp.content, type=kind)
    except msgspec.MsgspecError as exc:
        raise SelfServiceError(f"the router's answer to GET {path} is not what this agent expects: {exc}") from None


def host_id(config: AgentConfig) -> str:
    """This host's id, as the router knows its token."""
    return _get(config, "/hosts/ping", PingReply).host_id


def fetch_earnings(config: AgentConfig, days: int) -> tuple[HostEarnings, bytes]:
    hid = host_id(config)
    e = _get(config, f"/hosts/{hid}/earnings", HostEarnings, {"days": days})
    return e, msgspec.json.encode(e)


def fetch_market(config: AgentConfig) -> HostMarket:
    return _get(config, f"/hosts/{host_id(config)}/market", HostMarket)


# ---------------------------------------------------------------- showing money
def dollars(usd: str | None) -> str:
    """A decimal USD string as dollars and cents: "1234.5678" -> "$1,234.57"."""
    if usd is None:
        return "N/A"
    cents = Decimal(usd).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"-${abs(cents):,.2f}" if cents < 0 else f"${cents:,.2f}"


def price(usd: str) -> str:
    """A price per million tokens, every digit kept: "0.055" -> "$0.055"."""
    return f"${usd}"


def table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


# ---------------------------------------------------------------- earnings
def render_earnings(e: HostEarnings) -> str:
    span = f"last {e.days} day{'s' if e.days != 1 else ''}"
    out = [f"Earnings of {e.name} ({e.host_id}), payout share {e.payout_share_bps / 100:g} %"]
    if not e.payout_share_bps:
        out.append("This host earns no share of what clients pay (its payout share is 0).")
    out += ["", table(["", "amount"], [["today (UTC)", dollars(e.today_usd)], ["this month", dollars(e.month_usd)],
                                       [span, dollars(e.window_usd)], ["owed (not yet paid out)", dollars(e.owed_usd)],
                                       ["paid out", dollars(e.paid_usd)]], right={1}), ""]
    if not e.per_model:
        out.append(f"No requests served in the {span}.")
        return "\n".join(out)
    out += [f"Per model, {span}:",
            table(["model", "requests", "earned"],
                  [[m.model, f"{m.requests:,}", dollars(m.earned_usd)] for m in e.per_model], right={1, 2}),
            "", "Per day:",
            table(["day (UTC)", "model", "requests", "tokens in", "tokens out", "earned"],
                  [[d.day, d.model, f"{d.requests:,}", f"{d.prompt_tokens:,}", f"{d.completion_tokens:,}",
                    dollars(d.earned_usd)] for d in e.per_day], right={2, 3, 4, 5})]
    return "\n".join(out)


# ---------------------------------------------------------------- models
def render_market(m: HostMarket, *, show_all: bool = False) -> str:
    gpus = f"{m.gpu_count} x {m.gpu_type}" if m.gpu_type else "GPU type not reported"
    rows = [r for r in m.models if show_all or r.fits or r.serving]
    hidden = len(m.models) - len(rows)
    body = table(
        ["model", "serving", "prompt/Mtok", "completion/Mtok", "demand tok/s", "replicas", "load",
         "expected/h here", "licence"],
        [[r.model + ("" if r.enabled else " (not sold)") + ("" if r.fits or r.serving else " (does not fit)"),
          "yes" if r.serving else "", price(r.prompt_per_mtok_usd), price(r.completion_per_mtok_usd),
          f"{r.demand_tps:,.1f}", str(r.replicas), "N/A" if r.utilization is None else f"{r.utilization:.0%}",
          dollars(r.expected_per_hour_usd) if r.fits or r.serving else "-", _licence_short(r)] for r in rows],
        right={2, 3, 4, 5, 6, 7})
    out = [f"Models for {m.name} ({m.host_id}): {gpus}, payout share {m.payout_share_bps / 100:g} %", "", body, "",
           f"expected/h: {m.assumption}."]
    if hidden:
        out.append(f"{hidden} more catalogue model(s) do not fit this host's GPUs (--all lists them, with why).")
    out += ["", "Licences (every model's terms travel with what it serves):"]
    for r in rows:
        lic = r.licence
        out.append(f"  {r.model}: {lic.name} (version {lic.version}), {lic.url}; commercial use {lic.commercial_use}")
        if lic.restrictions:
            out.append(f"    restrictions: {lic.restrictions}")
        if lic.attribution:
            out.append(f"    attribution required: {lic.attribution}")
    if show_all:
        out += ["", "Why not:"] + [f"  {r.model}: {r.why_not}" for r in m.models if r.why_not]
    return "\n".join(out)


def _licence_short(r: MarketModel) -> str:
    use = r.licence.commercial_use
    return r.licence.name + ("" if use == "allowed" else f" (commercial use {use})")


# ---------------------------------------------------------------- serve-models
def plan(market: HostMarket, wanted: list[str]) -> list[MarketModel]:
    """The market's rows for `wanted`, in that order; SelfServiceError naming every model refused and why."""
    rows = {r.model: r for r in market.models}
    problems = []
    for model in wanted:
        r = rows.get(model)
        if r is None:
            problems.append(f"{model}: not in the catalogue (`tokenmill-host models` lists what is)")
        elif not r.fits and not r.serving:
            problems.append(f"{model}: this host's GPUs cannot serve it: {r.why_not}")
        elif not r.enabled:
            problems.append(f"{model}: the operator does not sell it now (disabled), so it would earn nothing")
    if problems:
        raise SelfServiceError("refused, nothing changed:\n  " + "\n  ".join(problems))
    return [rows[m] for m in wanted]


def serve_models(config: AgentConfig, control_url: str, wanted: list[str]) -> AgentStatus:
    if not wanted:
        raise SelfServiceError("name at least one model, e.g. serve-models llama-3.1-8b-instruct,qwen2.5-7b-instruct")
    rows = plan(fetch_market(config), wanted)
    body = {"models": wanted, "engines": [r.engine_spec for r in rows if r.engine_spec is not None]}
    try:
        # Starting a vLLM engine returns once it is launched (it loads its weights after): the timeout
        # covers stopping the engines no longer wanted (their grace period) and the launches.
        resp = httpx.post(f"{control_url}/models", json=body, timeout=config.vllm.stop_grace_s + 60.0,
                          trust_env=False)
    except httpx.HTTPError as exc:
        raise SelfServiceError(f"no agent answers at {control_url} ({type(exc).__name__}); is `tokenmill-host run` "
                               "running?") from None
    if resp.status_code != 200:
        raise SelfServiceError(f"the agent refused: {resp.text}")
    return msgspec.json.decode(resp.content, type=AgentStatus)


def fail(exc: SelfServiceError, command: str) -> int:
    print(f"tokenmill-host {command}: {exc}", file=sys.stderr)
    return 1
