#!/usr/bin/env bash
# Set up (first run) and run the whole test suite: lint, import contracts, pytest.
# The ledger tests also run on PostgreSQL when TOKENMILL_TEST_DATABASE_URL is set, or when
# PostgreSQL's server binaries are installed (a throwaway server is started and removed).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/venv.sh dev

if [ -z "${TOKENMILL_TEST_DATABASE_URL:-}" ]; then
    # This run's own server directory: another suite running on the machine keeps its server.
    export TOKENMILL_PG_STATE="${TMPDIR:-/tmp}/tokenmill-test-postgres.$$"
    if pg_url="$(scripts/throwaway-postgres.sh start)"; then
        trap 'scripts/throwaway-postgres.sh stop' EXIT
        export TOKENMILL_TEST_DATABASE_URL="$pg_url"
        echo "==> PostgreSQL tests against a throwaway server at $pg_url" >&2
    else
        echo "==> PostgreSQL server binaries not found: ledger tests run on SQLite only" >&2
    fi
fi

echo "==> ruff" >&2
ruff check --quiet .
echo "==> import contracts" >&2
lint-imports --no-cache 2>&1 | tail -n 3
echo "==> pytest" >&2
# On several workers (pytest-xdist; whole files to one worker: pyproject's --dist loadfile): most
# tests wait on sockets and child processes, so two workers per core, at most 4. Each worker picks
# its own ports (tests/ports.py); PostgreSQL tests each make their own database. A later -n in the
# arguments wins: `./test.sh -n 0` runs in one process.
workers="$(python -c 'import os; print(min(4, 2 * (os.cpu_count() or 1)))')"
pytest -n "$workers" "$@"
