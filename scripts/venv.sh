# Sourced by run.sh and test.sh: create or reuse .venv and install tokenmill into it.
# Reinstalls only when pyproject.toml (or the wanted extras) changed since the last install.
# Usage: . scripts/venv.sh [extras]      e.g. ". scripts/venv.sh dev"
extras="${1:-}"
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
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1) $spec"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing tokenmill$([ -n "$extras" ] && echo " [$extras]") into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root$([ -n "$extras" ] && echo "[$extras]")" >&2
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
