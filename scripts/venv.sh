# Sourced by run.sh and test.sh: create or reuse .venv and install tokenmill into it.
# Reinstalls only when pyproject.toml changed since the last install, or an extra is wanted that
# the last install did not include (run.sh after test.sh reuses the dev install as it is).
# Usage: . scripts/venv.sh EXTRAS      e.g. ". scripts/venv.sh dev", ". scripts/venv.sh """
# Always pass EXTRAS (even empty): a sourced file without arguments sees its caller's.
extras="${1:-}"
case "$extras" in
    *[!a-z0-9,_-]*)
        echo "scripts/venv.sh: extras must be a comma-separated list of names, not '$extras'" >&2
        exit 2 ;;
esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3}"

if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "tokenmill needs Python 3.11 or newer; '$py' is $("$py" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv" >&2
    "$py" -m venv "$venv" || {
        echo "could not create a virtual environment; on Debian/Ubuntu: apt-get install python3-venv" >&2
        exit 1
    }
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp="$venv/.tokenmill-installed"
hash="$(sha256sum < "$root/pyproject.toml" | cut -d' ' -f1)"
want="$hash $spec"
# The stamp reads "HASH ." or "HASH .[a,b]": enough when the hash matches and holds every wanted extra.
installed="$(cat "$stamp" 2>/dev/null || true)"
satisfied=0
case "$installed" in
    "$hash ."*)
        satisfied=1
        have=",$(echo "${installed#"$hash ."}" | tr -d '[]'),"
        for extra in ${extras//,/ }; do
            case "$have" in *",$extra,"*) ;; *) satisfied=0 ;; esac
        done ;;
esac
if [ "$satisfied" != 1 ]; then
    echo "==> installing tokenmill$([ -n "$extras" ] && echo " [$extras]") into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root$([ -n "$extras" ] && echo "[$extras]")" >&2
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
