"""`tokenmill payouts list | run | mark-paid | cancel | host`: host payouts from the command line.

Like `tokenmill invoices`, these talk to the running backend's admin API (settings admin_host /
admin_port, or --url; the admin token from TOKENMILL_ADMIN_TOKEN, the settings or the data
directory's token file): the backend pays, posts and records; the command shows.

    tokenmill payouts list [--host ID] [--state pending|paid|failed|canceled]
    tokenmill payouts run [--host ID [--ignore-threshold]]
    tokenmill payouts mark-paid PAYOUT_ID --reference "bank transfer 2026-12-01 #123"
    tokenmill payouts cancel PAYOUT_ID
    tokenmill payouts host ID [--threshold 25.00|default] [--method stripe|manual|none] [--stripe-account acct_...]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from backend.cli_admin import CliError, add_url, call, guarded, print_table, utc_minute
from backend.wire.payouts import HostPayoutOut, PayoutOut, PayoutRunOut, SetPayoutSettings


def print_payouts(payouts: Sequence[PayoutOut]) -> None:
    rows = [("payout", "host", "amount", "method", "state", "created", "paid", "transfer / reference", "failure")]
    rows += [(p.id, p.host_name, p.amount_usd, p.method, p.state, utc_minute(p.created_us), utc_minute(p.paid_us),
              p.stripe_transfer_id or p.reference or p.destination, p.failure[:60]) for p in payouts]
    print_table(rows, right=(2,))


def print_run(out: PayoutRunOut) -> None:
    for title, rows in (("paid", out.paid), ("due: pay by other means, then `tokenmill payouts mark-paid ID "
                                             "--reference ...`", out.awaiting_operator),
                        ("retrying after a wait (Stripe did not answer)", out.retrying),
                        ("FAILED (Stripe refused; the next payout is a new one)", out.failed)):
        if rows:
            print(f"{title}:")
            print_payouts(rows)
    if not (out.paid or out.awaiting_operator or out.retrying or out.failed):
        print("no host is due a payout")


def print_host(h: HostPayoutOut) -> None:
    dest = {"stripe": f"Stripe account {h.stripe_account}", "manual": "manual (paid by other means, recorded)"}.get(
        h.method, "none (never paid until one is set)")
    print(f"host {h.host_name} ({h.host_id})")
    for label, value in (("destination", dest),
                         ("threshold", h.threshold_usd + (" (default)" if h.threshold_is_default else "")),
                         ("owed", h.owed_usd), ("next payout", h.next),
                         ("last paid", "never" if h.last_paid is None else
                          f"{h.last_paid.amount_usd} on {utc_minute(h.last_paid.paid_us)} ({h.last_paid.id})")):
        print(f"  {label:<12} {value}")
    if h.failures:
        print(f"  {'failures':<12} {h.failures} in a row; next attempt {utc_minute(h.next_attempt_us)}")


def cmd_list(settings: Any, args: argparse.Namespace) -> int:
    payouts = call(settings, args, lambda api: api.payouts(args.host, args.state, args.limit))
    if payouts:
        print_payouts(payouts)
    else:
        print("no payouts")
    return 0


def cmd_run(settings: Any, args: argparse.Namespace) -> int:
    if args.ignore_threshold and not args.host:
        raise CliError("--ignore-threshold pays one host below its threshold: name it with --host")
    out = call(settings, args, lambda api: api.run_payouts(args.host, args.ignore_threshold))
    print_run(out)
    return 1 if out.failed else 0


def cmd_mark_paid(settings: Any, args: argparse.Namespace) -> int:
    p = call(settings, args, lambda api: api.mark_payout_paid(args.payout_id, args.reference))
    print(f"payout {p.id} of {p.amount_usd} to host {p.host_name} recorded as paid ({p.reference})")
    return 0


def cmd_cancel(settings: Any, args: argparse.Namespace) -> int:
    p = call(settings, args, lambda api: api.cancel_payout(args.payout_id))
    print(f"payout {p.id} of {p.amount_usd} to host {p.host_name} canceled: the amount stays owed, and the next "
          f"run pays it to the host's destination")
    return 0


def cmd_host(settings: Any, args: argparse.Namespace) -> int:
    if args.threshold is None and args.method is None and args.stripe_account is None:
        h = call(settings, args, lambda api: api.host_payout(args.host_id))
    else:
        change = SetPayoutSettings(threshold_usd=args.threshold, method=args.method, stripe_account=args.stripe_account)
        h = call(settings, args, lambda api: api.set_host_payout(args.host_id, change))
    print_host(h)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    po = sub.add_parser("payouts", help="host payouts: list, run now, mark a manual one paid or cancel it, a "
                                        "host's settings")
    po_sub = po.add_subparsers(dest="payouts_command", required=True)
    ls = add_url(po_sub.add_parser("list", help="payouts, newest first"))
    ls.add_argument("--host", help="only this host's (its id)")
    ls.add_argument("--state", choices=("pending", "paid", "failed", "canceled"))
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(func=guarded(cmd_list))
    run = add_url(po_sub.add_parser("run", help="pay every host due now (the payout loop, at once)"))
    run.add_argument("--host", help="only this host")
    run.add_argument("--ignore-threshold", action="store_true", help="with --host: pay what it is owed now")
    run.set_defaults(func=guarded(cmd_run))
    mp = add_url(po_sub.add_parser("mark-paid", help="record a manual payout as paid by other means"))
    mp.add_argument("payout_id", help="e.g. po_0123456789abcdef01234567")
    mp.add_argument("--reference", required=True, help="how it was paid (a bank transfer's reference...)")
    mp.set_defaults(func=guarded(cmd_mark_paid))
    cancel = add_url(po_sub.add_parser("cancel", help="cancel a manual payout due that will not be paid by "
                                                     "other means (the amount stays owed)"))
    cancel.add_argument("payout_id", help="e.g. po_0123456789abcdef01234567")
    cancel.set_defaults(func=guarded(cmd_cancel))
    host = add_url(po_sub.add_parser("host", help="a host's payout settings, owed, next and last payout; "
                                                 "set them with the options"))
    host.add_argument("host_id")
    host.add_argument("--threshold", metavar="USD", help='paid once this much is owed, or "default"')
    host.add_argument("--method", choices=("stripe", "manual", "none"), help="where payouts go")
    host.add_argument("--stripe-account", metavar="acct_...", help="the host's Stripe Connect account")
    host.set_defaults(func=guarded(cmd_host))
