#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite, from Debian's packages.
#   start: prints its URL (trust auth, loopback only, fsync off); exits 1 if no server binaries
#   stop:  stops it and deletes its files
# TOKENMILL_PG_STATE names its directory: two runs on one machine (two checkouts' test suites) need
# two, or the second's start stops the first's server (start begins by stopping what is there).
set -euo pipefail
state="${TOKENMILL_PG_STATE:-${TMPDIR:-/tmp}/tokenmill-test-postgres}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
start)
    [ -n "$bin" ] && [ -x "$bin/initdb" ] || exit 1
    "$0" stop >/dev/null 2>&1 || true
    mkdir -p "$state"
    [ "$(id -u)" = 0 ] && chown postgres "$state"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_owner "$bin/initdb" -D "$state/data" -U tokenmill --auth=trust -E UTF8 >"$state/initdb.log" 2>&1
    as_owner "$bin/pg_ctl" -D "$state/data" -l "$state/server.log" -w \
        -o "-p $port -k $state -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    echo "postgresql://tokenmill@127.0.0.1:$port/postgres"
    ;;
stop)
    if [ -d "$state/data" ] && [ -n "$bin" ]; then
        as_owner "$bin/pg_ctl" -D "$state/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$state"
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
