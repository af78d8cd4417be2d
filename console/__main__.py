"""`python -m console --url URL --token TOKEN [--readonly] [--simulated]`."""

from __future__ import annotations

import argparse
import os

from console.client import AdminClient


def run_console(url: str, token: str, *, readonly: bool = False, simulated: bool = False,
                refresh_s: float = 2.0) -> None:
    from console.app import TokenmillApp
    from console.gc_pacer import GcPacer

    # The app closes the client on its own loop when it exits (owns_api).
    TokenmillApp(AdminClient(url, token), readonly=readonly, simulated=simulated, refresh_s=refresh_s,
                 owns_api=True, gc_pacer=GcPacer()).run()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m console", description="The tokenmill console.")
    p.add_argument("--url", default=os.environ.get("TOKENMILL_ADMIN_URL", "http://127.0.0.1:8640"))
    # Prefer the environment over argv: a token on the command line shows up in `ps`.
    p.add_argument("--token", default=os.environ.get("TOKENMILL_ADMIN_TOKEN", ""))
    p.add_argument("--readonly", action="store_true", help="disable every action")
    p.add_argument("--simulated", action="store_true", help="mark the screen SIMULATED")
    p.add_argument("--refresh", type=float, default=2.0, help="seconds between refreshes")
    args = p.parse_args(argv)
    if not args.token:
        p.error("an admin token is needed (--token or TOKENMILL_ADMIN_TOKEN)")
    run_console(args.url, args.token, readonly=args.readonly, simulated=args.simulated, refresh_s=args.refresh)


if __name__ == "__main__":
    main()
