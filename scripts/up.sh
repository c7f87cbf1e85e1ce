#!/usr/bin/env bash
# README command 1: set up, prepare the offline models, run everything (`intervue up`).
# `--local-llm` goes to the set-up (the embedded local language model: scripts/setup.sh);
# every other argument goes to `intervue up`.
set -euo pipefail
cd "$(dirname "$0")/.."
setup_args=()
up_args=()
for arg in "$@"; do
  if [ "$arg" = --local-llm ]; then
    setup_args+=("$arg")
  else
    up_args+=("$arg")
  fi
done
bash scripts/setup.sh ${setup_args[@]+"${setup_args[@]}"}
exec .venv/bin/intervue up ${up_args[@]+"${up_args[@]}"}
