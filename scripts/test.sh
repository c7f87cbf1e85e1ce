#!/usr/bin/env bash
# README command 2: set up, then run every test tier except `gpu` (unit, integration with
# a real nats-server, end-to-end in headless Chromium).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh || exit 1
bash scripts/setup.sh || exit 1
.venv/bin/python -m pytest -m "not gpu" "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here, not a pass" >&2
  exit 1
fi
exit "$code"
