"""Build the node's `DepthPipeline` from its parameters (ROS-free: the node and `mde-ros bag` share it)."""

from __future__ import annotations

from typing import Any

from .pipeline import DepthPipeline
from .scale.base import ScaleEstimator


def build_pipeline(params: dict[str, Any], scale: ScaleEstimator) -> DepthPipeline:
    """Backend (model, backend, engine_dir, threads, input_size) and pipeline (depth.max) from params."""
    from .inference.factory import create_backend
    from .models.resolve import resolve_onnx

    engine_dir = params["engine_dir"] or None
    onnx_path = resolve_onnx(params["model"], engine_dir)
    backend = create_backend(
        params["backend"],
        onnx_path,
        threads=params["threads"],
        engine_dir=engine_dir,
        input_size=params["input_size"] or None,
    )
    return DepthPipeline(backend, params["input_size"] or None, scale=scale, depth_max=params["depth.max"])
