"""ONNX Runtime backend: CPU, plus CUDA / TensorRT execution providers with onnxruntime-gpu."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, InvalidModelError
from ..models.onnx_contract import check_io_names, read_spec
from ..models.spec import INPUT_PIXELS, INPUT_PROMPT, OUTPUT_DEPTH
from .base import Backend

log = logging.getLogger(__name__)

# Preference order for `providers="auto"`.
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def available_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path,
        providers: str | list = "cpu",
        threads: int = 0,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError("onnxruntime is not installed: pip install onnxruntime") from exc
        super().__init__(read_spec(onnx_path))
        self.onnx_path = Path(onnx_path)
        requested = self._provider_list(providers)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), options, providers=requested)
        except Exception as exc:
            raise InvalidModelError(
                f"ONNX Runtime could not load {self.onnx_path}: {exc}. Re-export it with `mde-ros export`."
            ) from exc
        # Report what ORT really uses: it silently falls back to CPU when a GPU provider fails.
        self.providers = self.session.get_providers()
        first = requested[0] if isinstance(requested[0], str) else requested[0][0]
        if first not in self.providers:
            log.warning("ONNX Runtime fell back from %s to %s", first, self.providers[0])
        check_io_names(
            self.onnx_path,
            [i.name for i in self.session.get_inputs()],
            [o.name for o in self.session.get_outputs()],
            self.spec,
        )

    @staticmethod
    def _provider_list(providers: str | list) -> list:
        """A list is passed through (names or (name, options) pairs); strings name a preset."""
        if isinstance(providers, list):
            return providers
        available = available_providers()
        if providers == "cpu":
            return ["CPUExecutionProvider"]
        if providers == "auto":
            return [p for p in _GPU_PROVIDERS if p in available] + ["CPUExecutionProvider"]
        if providers in ("cuda", "tensorrt"):
            wanted = "CUDAExecutionProvider" if providers == "cuda" else "TensorrtExecutionProvider"
            if wanted not in available:
                raise BackendUnavailableError(
                    f"{wanted} is not available (have {available}); install onnxruntime-gpu"
                )
            return [wanted, "CPUExecutionProvider"]
        raise ValueError(f"unknown ONNX Runtime providers {providers!r}")

    @property
    def device(self) -> str:
        return self.providers[0]

    def infer(self, pixel_values: np.ndarray, prompt_ids: np.ndarray | None = None) -> np.ndarray:
        feeds = {INPUT_PIXELS: pixel_values}
        if self.spec.needs_prompt:
            if prompt_ids is None:
                raise ValueError(f"model {self.spec.name} needs prompt_ids")
            feeds[INPUT_PROMPT] = prompt_ids
        (depth,) = self.session.run([OUTPUT_DEPTH], feeds)
        return depth

    def close(self) -> None:
        self.session = None
