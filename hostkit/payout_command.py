"""`tokenmill-host payout`: this host's payout settings, through the router's host API with the
host token from the agent config (as `run` reads it). The router checks every value; its refusal
is printed as it names the field.

    tokenmill-host payout                                   show the threshold, destination, owed, next and last payout
    tokenmill-host payout --threshold 25.00                 be paid once $25.00 is owed ("default": the router's)
    tokenmill-host payout --stripe-account acct_1A2b3C...   be paid to this Stripe Connect account from now on

Exit codes: 0 done, 1 refused or unreachable, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys

import httpx
import msgspec

from hostkit.config import AgentConfig, ConfigError, load_config
from hostkit.protocol import Error, HostPayout, PingReply, SetHostPayout


class PayoutCommandError(Exception):
    """Ends the command with exit status 1 and this message."""


class _Envelope(msgspec.Struct):
    error: Error


def _refusal(resp: httpx.Response) -> PayoutCommandError:
    try:
        err = msgspec.json.decode(resp.content, type=_Envelope).error
    except msgspec.MsgspecError:
        return PayoutCommandError(f"the router answered HTTP {resp.status_code}")
    return PayoutCommandError(f"{err.message} (HTTP {resp.status_code}, {err.code})")


async def payout(config: AgentConfig, change: SetHostPayout | None) -> HostPayout:
    """This host's payout settings, after `change` when given."""
    headers = {"Authorization": f"Bearer {config.host_token.get_secret_value()}"}
    async with httpx.AsyncClient(base_url=config.router_url.rstrip("/"), headers=headers,
                                 timeout=config.router_timeout_s) as http:
        try:
            resp = await http.get("/hosts/ping")
            if resp.status_code >= 400:
                raise _refusal(resp)
            host_id = msgspec.json.decode(resp.content, type=PingReply).host_id
            path = f"/hosts/{host_id}/payout"
            if change is None:
                resp = await http.get(path)
            else:
                resp = await http.put(path, content=msgspec.json.encode(change),
                                      headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise PayoutCommandError(f"no router answers at {config.router_url} ({type(exc).__name__})") from None
        if resp.status_code >= 400:
            raise _refusal(resp)
        try:
            return msgspec.json.decode(resp.content, type=HostPayout)
        except msgspec.MsgspecError as exc:
            raise PayoutCommandError(f"unexpected answer from the router: {exc}") from None


def render(p: HostPayout) -> str:
    destination = {"stripe": f"Stripe account {p.stripe_account}",
                   "manual": "paid by the operator by other means (manual)"}.get(
        p.method, "none yet: set your Stripe account with --stripe-account acct_...")
    threshold = f"{p.threshold_usd}" + (" (the router's default)" if p.threshold_is_default else "")
    last = "never" if p.last_paid_us is None else \
        f"{p.last_paid_usd} on {dt.datetime.fromtimestamp(p.last_paid_us / 1e6, tz=dt.UTC):%Y-%m-%d %H:%M} UTC"
    rows = [("host", p.host_id), ("destination", destination), ("threshold", f"{threshold}, at least "
                                                                             f"{p.minimum_threshold_usd}"),
            ("owed", p.owed_usd), ("next payout", p.next), ("last paid", last)]
    return "\n".join(f"{k:<12} {v}" for k, v in rows)


def cmd_payout(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"tokenmill-host: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    change = None
    if args.threshold is not None or args.stripe_account is not None:
        change = SetHostPayout(threshold_usd=args.threshold, stripe_account=args.stripe_account)
    try:
        result = asyncio.run(payout(config, change))
    except PayoutCommandError as exc:
        print(f"tokenmill-host payout: {exc}", file=sys.stderr)
        return 1
    print(msgspec.json.encode(result).decode() if args.json else render(result))
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("payout", help="show or set this host's payout threshold and Stripe account")
    p.add_argument("--threshold", metavar="USD", help='be paid once this much is owed, e.g. 25.00 ("default": '
                                                      "the router's)")
    p.add_argument("--stripe-account", metavar="acct_...", help="your Stripe Connect account: payouts go there")
    p.add_argument("--config", help="agent TOML file (as for run)")
    p.add_argument("--json", action="store_true", help="print the router's JSON")
    p.set_defaults(func=cmd_payout)
