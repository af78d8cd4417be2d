"""What the operator's admin-API commands share (`tokenmill provision|offers|teardown|host-keys`,
`tokenmill invoices`, `tokenmill payouts`): the typed admin client run synchronously with its
errors worded for the operator, the exit status 1 for a refusal, and plain aligned tables."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from backend.wire.admin_client import AdminError, BackendUnavailable, BlockingAdminClient

T = TypeVar("T")
Command = Callable[[Any, argparse.Namespace], int]


class CliError(Exception):
    """Ends the command with exit status 1 and this message."""


class AdminApi(BlockingAdminClient):
    """The shared typed admin client (backend/wire/admin_client.py), run synchronously: a command does
    one thing at a time. Its errors become CliError, worded for the operator."""

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        try:
            return super().run(call)
        except BackendUnavailable as exc:
            raise CliError(f"no tokenmill backend answers at {exc.url} ({exc.reason}): start one with "
                           "`tokenmill serve`, or give its address with --url") from None
        except AdminError as exc:
            raise CliError(f"{exc.message} ({exc.status}{', ' + exc.code if exc.code else ''})") from None


def admin_api(settings: Any, args: argparse.Namespace) -> AdminApi:
    """A client of the backend at --url, or at the settings' admin address, with the admin token."""
    token = settings.admin_token.get_secret_value() or settings.ensure_admin_token()
    return AdminApi(args.url or settings.admin_url, token)


def call(settings: Any, args: argparse.Namespace, make: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """One admin call: `make(api)` builds it; the client is closed afterwards."""
    admin = admin_api(settings, args)
    try:
        return admin.run(make(admin.api))
    finally:
        admin.close()


def guarded(func: Command) -> Command:
    """A command whose CliError is printed as `tokenmill: ...` with exit status 1, no traceback."""
    def run(settings: Any, args: argparse.Namespace) -> int:
        try:
            return func(settings, args)
        except CliError as exc:
            print(f"tokenmill: {exc}", file=sys.stderr)
            return 1

    return run


def add_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--url", help="the backend's admin address (default: settings admin_host and admin_port)")
    return p


def print_table(rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> None:
    """Columns as wide as their widest cell; the columns in `right` aligned right (figures)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        print("  ".join(cells).rstrip())


def utc_minute(us: int | None) -> str:
    return "-" if us is None else dt.datetime.fromtimestamp(us / 1_000_000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
