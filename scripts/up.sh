#!/usr/bin/env bash
# README command 1: set up, prepare the offline models, run everything (`intervue up`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/intervue up "$@"
