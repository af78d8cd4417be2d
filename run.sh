#!/usr/bin/env bash
# Set up (first run) and start tokenmill's main job: the backend with a simulated local fleet
# and synthetic client traffic (no GPU, no account). Arguments, if any, go to `tokenmill`.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/venv.sh
if [ "$#" -eq 0 ]; then
    set -- serve --local
fi
exec tokenmill "$@"
