#!/usr/bin/env bash
# Set up (first run) and open tokenmill: the console, attached to the backend at the configured
# admin address, or to one it starts on the embedded default (simulated fleet and synthetic
# traffic, no GPU, no account) and stops on exit. Arguments, if any, go to `tokenmill`.
set -euo pipefail
cd "$(dirname "$0")"
# An explicit (empty) extras argument: a bare `. FILE` would hand it run.sh's own arguments.
. scripts/venv.sh ""
exec tokenmill "$@"
