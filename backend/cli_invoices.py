"""`tokenmill invoices generate | list | show | download`: monthly invoices from the command line.

Like the provisioning commands, these talk to the running backend's admin API (settings
admin_host/admin_port, or --url; the admin token from TOKENMILL_ADMIN_TOKEN, the settings or the
data directory's token file): the backend generates, numbers, stores and renders; the command shows.

    tokenmill invoices generate --month 2026-11 [--dry-run all|validate|none]
    tokenmill invoices list [--month 2026-11] [--client ID]
    tokenmill invoices show TM-2026-000123
    tokenmill invoices download TM-2026-000123 [--format pdf|csv] [-o FILE]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.cli_admin import add_url, call, guarded, print_table, utc_minute
from backend.wire.invoices import InvoiceOut, InvoiceSummaryOut, InvoicingRunOut


def _summaries(invoices: Sequence[InvoiceSummaryOut]) -> None:
    rows = [("number", "client", "period", "usage", "payments", "grants", "refunds", "opening", "closing")]
    rows += [(i.number, i.client_name, i.period, i.usage_total_usd, i.payments_total_usd, i.grants_total_usd,
              i.refunds_total_usd, i.opening_balance_usd, i.closing_balance_usd) for i in invoices]
    print_table(rows, right=range(3, 9))


def print_run(out: InvoicingRunOut) -> None:
    title = {"none": "issued", "all": "would issue (dry run: nothing written)",
             "validate": "validated (dry run: nothing written)"}[out.dry_run]
    print(f"{out.period_title} ({out.period}): {title}")
    if out.dry_run == "validate":
        print(f"{len(out.pending)} client(s) to invoice: {', '.join(p.client_id for p in out.pending) or 'none'}")
    elif out.issued:
        _summaries(out.issued)
    else:
        print("no invoice to issue")
    for d in out.duplicates:
        print(f"already issued: {d.number} to {d.client_name} ({d.client_id})")
    for f in out.failed:
        print(f"FAILED: {f.client_name} ({f.client_id}): {f.reason}")


def print_invoice(inv: InvoiceOut) -> None:
    print(f"{inv.number}  {inv.client_name} ({inv.client_id})  period {inv.period}  issued {utc_minute(inv.issued_us)}")
    rows = [("#", "kind", "description", "requests", "prompt tok", "compl tok", "amount")]
    for x in inv.lines:
        sign = "+" if x.effect_nano > 0 else "-"
        rows.append((str(x.position), x.kind, x.description, "" if x.requests is None else f"{x.requests:,}",
                     "" if x.prompt_tokens is None else f"{x.prompt_tokens:,}",
                     "" if x.completion_tokens is None else f"{x.completion_tokens:,}", f"{sign} {x.amount_usd}"))
    print_table(rows, right=(3, 4, 5, 6))
    for label, value in (("opening balance", inv.opening_balance_usd), ("payments", inv.payments_total_usd),
                         ("grants", inv.grants_total_usd), ("usage", inv.usage_total_usd),
                         ("refunds and disputes", inv.refunds_total_usd),
                         ("beyond the balance (owed)", inv.adjustments_total_usd),
                         ("closing balance", inv.closing_balance_usd)):
        print(f"{label:>26}  {value}")
    print(inv.rounding)


def cmd_generate(settings: Any, args: argparse.Namespace) -> int:
    out = call(settings, args, lambda api: api.generate_invoices(args.month, args.dry_run))
    print_run(out)
    return 1 if out.failed else 0


def cmd_list(settings: Any, args: argparse.Namespace) -> int:
    invoices = call(settings, args, lambda api: api.invoices(args.month, args.client))
    if invoices:
        _summaries(invoices)
    else:
        print("no invoices")
    return 0


def cmd_show(settings: Any, args: argparse.Namespace) -> int:
    print_invoice(call(settings, args, lambda api: api.invoice(args.number)))
    return 0


def cmd_download(settings: Any, args: argparse.Namespace) -> int:
    body = call(settings, args, lambda api: api.invoice_document(args.number, args.format))
    target = Path(args.output or f"{args.number}.{args.format}")
    target.write_bytes(body)
    print(f"{target} ({len(body):,} bytes)")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    inv = sub.add_parser("invoices", help="monthly invoices: generate (or dry-run), list, show, download")
    inv_sub = inv.add_subparsers(dest="invoices_command", required=True)
    gen = add_url(inv_sub.add_parser("generate", help="invoice a finished month (UTC) for every client with activity"))
    gen.add_argument("--month", help="YYYY-MM, or any ISO date in the month (default: the previous month)")
    gen.add_argument("--dry-run", choices=("all", "validate", "none"), default="none",
                     help="all: compute and show, write nothing; validate: only look for invoices already issued; "
                          "none: issue them (default)")
    gen.set_defaults(func=guarded(cmd_generate))
    ls = add_url(inv_sub.add_parser("list", help="issued invoices, newest first"))
    ls.add_argument("--month", help="only this month (YYYY-MM)")
    ls.add_argument("--client", help="only this client's (its id)")
    ls.set_defaults(func=guarded(cmd_list))
    show = add_url(inv_sub.add_parser("show", help="an invoice with its lines"))
    show.add_argument("number", help="e.g. TM-2026-000123")
    show.set_defaults(func=guarded(cmd_show))
    dl = add_url(inv_sub.add_parser("download", help="an invoice's PDF or CSV, written to a file"))
    dl.add_argument("number", help="e.g. TM-2026-000123")
    dl.add_argument("--format", choices=("pdf", "csv"), default="pdf")
    dl.add_argument("-o", "--output", help="the file to write (default: NUMBER.pdf or NUMBER.csv here)")
    dl.set_defaults(func=guarded(cmd_download))
