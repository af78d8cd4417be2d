"""`tokenmill`: the console's entry point, and the backend's commands behind it.

The entry point lives here, not in backend/, because backend/ never imports the console.
`tokenmill` (or `tokenmill console [--attach URL] [--readonly] [--keep-backend]`) opens the
cockpit, starting a backend on the embedded default when none answers; anything else is
backend.cli (serve, info, db, openapi).
"""

from __future__ import annotations

import argparse
import sys

from backend import cli as backend_cli


def console_command(argv: list[str]) -> int:
    from backend.settings import SettingsError, load_settings
    from console.__main__ import run_console
    from console.backend_child import BackendChild, status

    p = argparse.ArgumentParser(prog="tokenmill console", description="open the tokenmill console")
    p.add_argument("--attach", metavar="URL", help="the backend's admin address (default: settings)")
    p.add_argument("--readonly", action="store_true", help="disable every action")
    p.add_argument("--refresh", type=float, default=2.0, help="seconds between refreshes")
    p.add_argument("--keep-backend", action="store_true",
                   help="leave a backend this command started running on exit")
    args = p.parse_args(argv)
    try:
        s = load_settings()
    except SettingsError as exc:
        print(f"tokenmill: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    # Remote backends: the token comes from TOKENMILL_ADMIN_TOKEN or the settings file.
    token = s.admin_token.get_secret_value() or (s.ensure_admin_token() if not args.attach else "")
    if not token:
        print("tokenmill: attaching needs the backend's admin token (TOKENMILL_ADMIN_TOKEN)", file=sys.stderr)
        return 2
    url = args.attach or s.admin_url
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
    if not argv or argv[0] in ("--readonly", "--keep-backend", "--attach"):
        return console_command(argv)  # `tokenmill` alone opens the console
    if argv[0] == "console":
        return console_command(argv[1:])
    return backend_cli.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
