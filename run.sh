#!/usr/bin/env bash
# Set up (first run) and start tokenmill's main job. Extra arguments go to `tokenmill`.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/venv.sh
exec tokenmill "$@"
