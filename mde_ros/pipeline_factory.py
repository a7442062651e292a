"""Build the node's `DepthPipeline` from its settings (ROS-free: the node and `mde-ros bag` share it)."""

from __future__ import annotations

from .config import NodeConfig
from .pipeline import DepthPipeline
from .scale.base import ScaleEstimator


def build_pipeline(settings: NodeConfig, scale: ScaleEstimator) -> DepthPipeline:
    """Backend (model, backend, device, engine_dir, threads, input_size, precision, engine_profile)
    and pipeline (depth.max, preprocess) from settings."""
    from .inference.factory import create_backend
    from .models.resolve import resolve_onnx

    m = settings.model
    engine_dir = m.engine_dir or None
    onnx_path = resolve_onnx(m.model, engine_dir)
    backend = create_backend(
        m.backend,
        onnx_path,
        threads=m.threads,
        device=m.device,
        engine_dir=engine_dir,
        input_size=m.input_size or None,
        precision=m.precision,
        static_from_first_input=m.engine_profile == "static",
    )
    return DepthPipeline(
        backend, m.input_size or None, scale=scale, depth_max=settings.depth.max, preprocess=m.preprocess
    )
