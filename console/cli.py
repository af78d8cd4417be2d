"""`tokenmill`: the console's entry point, and the backend's commands behind it.

The entry point lives here, not in backend/, because backend/ never imports the console.
`tokenmill` (or `tokenmill console`, with the options `tokenmill --help` lists) opens the
cockpit, starting a backend on the embedded default when none answers; anything else is
backend.cli (serve, info, db, openapi).
"""

from __future__ import annotations

import argparse
import sys

from backend import cli as backend_cli

CONSOLE_USAGE = "tokenmill [console] [--attach URL] [--readonly] [--refresh S] [--keep-backend]"


def console_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokenmill console", usage=CONSOLE_USAGE, description=(
        "open the tokenmill console (what bare `tokenmill` does): attached to the backend at the admin "
        "address, or to one it starts on the embedded default (simulated fleet and traffic) and stops on exit"))
    p.add_argument("--attach", metavar="URL",
                   help="the backend's admin address (default: settings); the admin token comes from "
                        "TOKENMILL_ADMIN_TOKEN, the settings, or the data dir's admin_token file")
    p.add_argument("--readonly", action="store_true", help="disable every action")
    p.add_argument("--refresh", type=float, default=2.0, metavar="S", help="seconds between refreshes (default 2)")
    p.add_argument("--keep-backend", action="store_true",
                   help="leave a backend this command started running on exit")
    return p


def admin_token(settings, attaching: bool) -> str:
    """The settings' token, else the data dir's token file. Only a backend this command may start
    gets a new file: attaching never invents a token the backend could not know."""
    token = settings.admin_token.get_secret_value()
    if token or not attaching:
        return token or settings.ensure_admin_token()
    path = settings.admin_token_file
    try:
        return path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    except OSError:
        return ""


def console_command(argv: list[str]) -> int:
    from backend.settings import SettingsError, load_settings
    from console.__main__ import run_console
    from console.backend_child import BackendChild, status

    args = console_parser().parse_args(argv)
    if args.refresh <= 0:
        console_parser().error("--refresh: must be more than 0 seconds")
    try:
        s = load_settings()
    except SettingsError as exc:
        print(f"tokenmill: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    token = admin_token(s, attaching=bool(args.attach))
    if not token:
        print(f"tokenmill: attaching needs the backend's admin token: set TOKENMILL_ADMIN_TOKEN (none in "
              f"{s.admin_token_file} either)", file=sys.stderr)
        return 2
    url = (args.attach or s.admin_url).rstrip("/")
    child = None
    found = status(url, token)
    if args.attach and found is None:
        print(f"tokenmill: no tokenmill backend answers at {url} with this token", file=sys.stderr)
        return 1
    if found is None:
        print(f"no backend at {url}: starting one on the embedded default (simulated fleet and traffic)...",
              flush=True)
        try:
            child = BackendChild.start(url, token, s.log_path.parent / "backend-child.log")
        except RuntimeError as exc:
            print(f"tokenmill: {exc}", file=sys.stderr)
            return 1
    try:
        simulated = child is not None or bool(found and found.get("simulated"))
        run_console(url, token, readonly=args.readonly, simulated=simulated, refresh_s=args.refresh)
    finally:
        if child is not None and not args.keep_backend:
            print("stopping the backend this console started (draining its simulated hosts)...", flush=True)
            child.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `tokenmill` alone, or with only options (`--attach=URL`, `--refresh 5`...), opens the console.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        return console_command(argv)
    if argv[0] == "console":
        return console_command(argv[1:])
    return backend_cli.main(argv, epilog="With no command, `tokenmill` opens the console.\n\n"
                                        + console_parser().format_help())


if __name__ == "__main__":
    raise SystemExit(main())
