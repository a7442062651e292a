"""Tiny random-weight models of the real architectures, for tests, benchmarks and the CI demo.

They are clearly not depth models: their names start with `random-` and their output is noise.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .registry import get_spec
from .spec import ModelSpec


def tiny_depth_anything_spec(convention: str = "disparity", name: str | None = None) -> ModelSpec:
    """A Depth Anything V2 layout shrunk to ~0.2 M parameters (same graph, fewer channels)."""
    base = get_spec(
        "depth-anything-v2-small" if convention == "disparity" else "depth-anything-v2-metric-indoor-small"
    )
    config = copy.deepcopy(base.config)
    config["backbone_config"].update(
        hidden_size=48, num_hidden_layers=4, num_attention_heads=2, out_indices=[1, 2, 3, 4]
    )
    config.update(
        reassemble_hidden_size=48,
        neck_hidden_sizes=[8, 16, 24, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    return ModelSpec(
        name=name or f"random-tiny-depth-anything-{convention}",
        architecture="depth_anything",
        convention=convention,
        max_depth=base.max_depth,
        config=config,
        default_input_size=base.default_input_size,
        description="random weights, for tests only",
    )


def export_tiny_depth_anything(path: str | Path, convention: str = "disparity", seed: int = 0) -> Path:
    from .export import export_onnx
    from .torch_models import build_depth_anything

    spec = tiny_depth_anything_spec(convention)
    return export_onnx(build_depth_anything(spec, seed=seed), spec, path)
