"""ONNX Runtime backend: CPU or CUDA execution provider, on an ONNX bundle.

Given a bundle in another format (a TensorRT engine), it runs the ONNX bundle that engine
was exported from or shares a source with (`find_variants`). On CUDA it checks that ONNX
Runtime really put the model on the CUDA provider: ORT silently falls back to the CPU when
the CUDA libraries it needs are missing, which would make "onnxruntime-cuda" a lie.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from inference.backends.base import (
    Backend,
    BackendUnavailable,
    check_classes,
    check_input,
    cuda_device_present,
    export_info,
    find_variants,
)
from inference.backends.config import OnnxRuntimeConfig
from inference.bundle import Bundle

log = logging.getLogger(__name__)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, config: OnnxRuntimeConfig | None = None) -> None:
        super().__init__(config or OnnxRuntimeConfig())
        self._session: Any = None
        self._input_name = ""

    @classmethod
    def unavailable_reason(cls, config: Any) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed"
        if getattr(config, "device", "cpu") == "cuda":
            reason = cuda_device_present()
            if reason:
                return reason
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return (
                    "this onnxruntime build has no CUDAExecutionProvider "
                    "(pip install onnxruntime-gpu in place of onnxruntime)"
                )
        return None

    def load(self, bundle: Bundle) -> None:
        reason = self.unavailable_reason(self.config)
        if reason:
            raise BackendUnavailable(reason)
        import onnxruntime as ort

        variants = find_variants(bundle, "onnx")
        if not variants:
            raise BackendUnavailable(
                f"bundle {bundle.meta.name} has no ONNX form "
                f"(export one: intervue export {bundle.meta_path} --format onnx)"
            )
        # an int8 Q/DQ export is for TensorRT (ORT runs it slower on a CPU, and less
        # exactly): taken only when it is the bundle asked for, or the only ONNX
        variants.sort(key=lambda b: b is not bundle and export_info(b).get("precision") == "int8")
        onnx_bundle = variants[0]
        if onnx_bundle is not bundle:
            onnx_bundle.verify()
        cfg: OnnxRuntimeConfig = self.config
        options = ort.SessionOptions()
        if cfg.threads:
            # a worker analyses one small batch at a time: parallelism inside a 64×64
            # network costs more in hand-offs than it gains (docs/face-detector.md)
            options.intra_op_num_threads = cfg.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if cfg.device == "cuda":
            providers: list[Any] = [
                ("CUDAExecutionProvider", {"device_id": cfg.device_index}),
                "CPUExecutionProvider",
            ]
        else:
            providers = ["CPUExecutionProvider"]
        session = ort.InferenceSession(str(onnx_bundle.weights_path), options, providers=providers)
        if cfg.device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
            raise BackendUnavailable(
                "onnxruntime could not start its CUDA provider (CUDA/cuDNN libraries "
                f"missing?); it fell back to {session.get_providers()}"
            )
        model_input = session.get_inputs()[0]
        check_input(onnx_bundle, list(model_input.shape[1:]))
        check_classes(onnx_bundle, session.get_outputs()[0].shape[-1])
        fixed_batch = model_input.shape[0]
        self.max_batch = cfg.max_batch
        if isinstance(fixed_batch, int) and fixed_batch > 0:
            self.max_batch = min(self.max_batch, fixed_batch)
            self.details["fixed_batch"] = fixed_batch
        self._session = session
        self._input_name = model_input.name
        self.device = f"cuda:{cfg.device_index}" if cfg.device == "cuda" else "cpu"
        self.bundle = onnx_bundle
        self.details.update(providers=session.get_providers(), weights=onnx_bundle.meta.weights)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        fixed = self.details.get("fixed_batch")
        if fixed and batch.shape[0] < fixed:  # a model exported without a dynamic batch
            pad = np.zeros((fixed - batch.shape[0], *batch.shape[1:]), np.float32)
            out = self._session.run(None, {self._input_name: np.concatenate([batch, pad])})[0]
            return out[: batch.shape[0]]
        return self._session.run(None, {self._input_name: batch})[0]

    def close(self) -> None:
        self._session = None
