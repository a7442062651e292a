"""Shared fixtures: tiny random-weight ONNX models of the real architectures, exported once per run."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> str:
    """Depth Anything V2 graph with ~0.2 M random weights, relative (disparity) convention."""
    from mde_ros.models.testing import export_tiny_depth_anything

    return str(export_tiny_depth_anything(tmp_path_factory.mktemp("models") / "tiny_disparity.onnx"))


@pytest.fixture(scope="session")
def tiny_metric_onnx(tmp_path_factory) -> str:
    """Same graph with the metric head (sigmoid x max_depth)."""
    from mde_ros.models.testing import export_tiny_depth_anything

    return str(export_tiny_depth_anything(tmp_path_factory.mktemp("models") / "tiny_metric.onnx", "metric"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
