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
pytest "$@"
