"""The interface every inference backend implements.

A backend runs the ONNX contract (`mde_ros.models.spec`): normalised pixels in, depth in the
model's convention out, at the input's resolution. Pre/post-processing is shared and lives in
`mde_ros.processing`, so the backends differ only in how they execute the network.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..geometry.intrinsics import CameraIntrinsics
from ..models.spec import ModelSpec


@dataclass(frozen=True)
class DepthMapping:
    """The last, per-pixel steps from a prediction to metres, as `DepthPipeline` applies them on the
    host, so that a device can compute the same depth from its own copy of the prediction:
    disparity models `1 / (gain * p + offset)` (NaN where that denominator is <= 1e-6), metric
    models `p * gains[0] * gains[1] ...` (NaN where not > 0); then +Inf beyond `depth_max` (> 0)."""

    inverse: bool
    gains: tuple[float, ...] = (1.0,)
    offset: float = 0.0
    depth_max: float = 0.0


# (mapping, intrinsics, stride, max_range) -> organised [H', W', 3] float32 points on the host
DevicePoints = Callable[[DepthMapping, CameraIntrinsics, int, float], np.ndarray]


@dataclass(frozen=True)
class DevicePrediction:
    """What `Backend.predict_frame` returns: the prediction at the image size (on the host) and,
    when the backend keeps it on its device, the back-projection of that device copy."""

    prediction: np.ndarray
    network_size: tuple[int, int]
    points: DevicePoints | None = None


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

    def predict_frame(self, rgb: np.ndarray, short_side: int) -> DevicePrediction | None:
        """Whole frame -> prediction at the image size with pre/post-processing on the backend's
        device (GPU backends, `device_processing`); None: use the CPU pipeline."""
        return None

    def close(self) -> None:
        """Release sessions, engines and device buffers."""

    def describe(self) -> str:
        return f"{self.name} on {self.device}"

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
