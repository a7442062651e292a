"""The interface every inference backend implements.

A backend runs the ONNX contract (`mde_ros.models.spec`): normalised pixels in, depth in the
model's convention out, at the input's resolution. Pre/post-processing is shared and lives in
`mde_ros.processing`, so the backends differ only in how they execute the network.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..models.spec import ModelSpec


class Backend(ABC):
    """Executes one depth network. Not thread-safe: one worker thread owns it."""

    #: short backend name: "onnxruntime", "tensorrt", "torch"
    name: str = ""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @property
    @abstractmethod
    def device(self) -> str:
        """What actually executes the network, e.g. 'CPUExecutionProvider' or 'cuda:0 (NVIDIA H100)'."""

    @abstractmethod
    def infer(self, pixel_values: np.ndarray, prompt_ids: np.ndarray | None = None) -> np.ndarray:
        """Run the network: float32 [B,3,H,W] (+ int64 [B,L]) -> float32 [B,H,W]."""

    def predict_frame(self, rgb: np.ndarray, short_side: int) -> tuple[np.ndarray, tuple[int, int]] | None:
        """Whole frame -> (prediction at the image size, network (h, w)) with pre/post-processing on
        the backend's device (GPU backends, `device_processing`); None: use the CPU pipeline."""
        return None

    def close(self) -> None:
        """Release sessions, engines and device buffers."""

    def describe(self) -> str:
        return f"{self.name} on {self.device}"

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
