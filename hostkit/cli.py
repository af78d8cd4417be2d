"""`tokenmill-host`: the agent on a GPU host."""

from __future__ import annotations

import argparse

from hostkit import __version__


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tokenmill-host", description="tokenmill host agent")
    p.add_argument("--version", action="version", version=f"tokenmill-host {__version__}")
    p.parse_args(argv)
    p.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
