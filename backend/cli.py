"""`tokenmill`: the operator's command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from backend import __version__


def _settings():
    from backend.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        print(f"tokenmill: invalid configuration\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_info(s, _args: argparse.Namespace) -> int:
    from backend.catalogue import CatalogueError, load_catalogue, shipped_dir
    from backend.db.engine import mask_url

    token_state = "from settings" if s.admin_token.get_secret_value() else f"{s.admin_token_file} (mode 0600)"
    rows = [
        ("version", __version__),
        ("config file", str(s.config_file) if s.config_file else "none (built-in defaults)"),
        ("database", mask_url(s.db_url)),
        ("log file", str(s.log_path)),
        ("data dir", str(s.data_dir)),
        ("admin API", s.admin_url),
        ("admin token", token_state),
    ]
    try:
        cat = load_catalogue(s.catalogue_dir)
        where = s.catalogue_dir or shipped_dir()
        counts = f"{len(cat.models)} models, {len(cat.gpus)} GPUs, {len(cat.offers)} offers"
        rows.append(("catalogue", f"{where} ({counts})"))
    except CatalogueError as exc:
        rows.append(("catalogue", f"INVALID: {exc}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def cmd_db_upgrade(s, _args: argparse.Namespace) -> int:
    from backend.db.engine import current_revision, make_engine, mask_url, migrate

    async def run() -> str | None:
        engine = make_engine(s.db_url, synchronous=s.sqlite_synchronous)
        try:
            await migrate(engine)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    rev = asyncio.run(run())
    print(f"{mask_url(s.db_url)}: schema at revision {rev}")
    return 0


def cmd_serve(s, args: argparse.Namespace) -> int:
    from backend.server import run

    if args.port is not None:
        s.admin_port = args.port
    if args.host is not None:
        s.admin_host = args.host
    return run(s, local=args.local)


def cmd_openapi(s, args: argparse.Namespace) -> int:
    import json

    from backend.app import create_app

    print(json.dumps(create_app(s).openapi_schema.to_schema(), indent=2, sort_keys=True))
    return 0


def _run_command(s, argv: list[str]) -> int:
    """Run another command with these settings: the quick-start wizard hands `provision ...` here."""
    args = build_parser().parse_args(argv)
    return args.func(s, args)


def build_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokenmill", description="Run an inference business from a terminal.",
                                epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"tokenmill {__version__}")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("info", help="which config, database, log file and data dir are in use").set_defaults(
        func=cmd_info
    )
    serve = sub.add_parser("serve", help="run the backend: client API, admin API, host API, ledger")
    serve.add_argument("--local", action="store_true",
                       help="also run a simulated local fleet and synthetic client traffic (no GPU, no account)")
    serve.add_argument("--host", help="listen address (default: settings admin_host)")
    serve.add_argument("--port", type=int, help="listen port (default: settings admin_port)")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("console", help="open the console (see `tokenmill console --help`)")
    sub.add_parser("openapi", help="print the OpenAPI schema of the backend's API").set_defaults(func=cmd_openapi)
    from backend.cli_provision import add_commands

    add_commands(sub)
    from backend.simulate.command import add_command as add_simulate

    add_simulate(sub)
    from backend.cli_quickstart import add_command as add_quickstart

    add_quickstart(sub, run=_run_command)
    from backend.cli_invoices import add_command as add_invoices

    add_invoices(sub)
    from backend.cli_payouts import add_command as add_payouts

    add_payouts(sub)
    db = sub.add_parser("db", help="ledger database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply schema migrations").set_defaults(func=cmd_db_upgrade)
    return p


def _log_to_stderr() -> None:
    """A one-off command logs its warnings to the terminal: the log file is the server's, and a
    `tokenmill info` run beside a running server must not write into it."""
    from backend.logs import RedactingFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("tokenmill: %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def main(argv: list[str] | None = None, epilog: str | None = None) -> int:
    from backend.logs import setup_logging

    args = build_parser(epilog).parse_args(argv)
    settings = _settings()
    func = getattr(args, "func", cmd_info)  # `tokenmill` alone is the console (console/cli.py)
    if func is cmd_serve:
        setup_logging(settings.log_path, settings.log_level)
    else:
        _log_to_stderr()
    settings.ensure_admin_token()
    try:
        code = func(settings, args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`tokenmill openapi | head`): that is not an error. Point stdout at
        # /dev/null so the interpreter's own flush at exit does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    raise SystemExit(main())
