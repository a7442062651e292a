"""`model: default`: rebuilt from the installed packages + shipped weights, exported once, runs on castel."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="session")
def default_onnx(tmp_path_factory):
    """The default model's ONNX, built once per test session (about a minute on a CPU)."""
    from mde_ros.models.default_model import ensure_default_onnx

    return ensure_default_onnx(tmp_path_factory.mktemp("engines"))


def test_shipped_weights_are_small_fp16_and_trained_parts_only():
    from safetensors import safe_open

    from mde_ros.models.default_model import WEIGHTS_DIR, default_weights, shipped_spec

    path = default_weights()
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir() if p.is_file())
    assert total <= 25 * 2**20
    assert (WEIGHTS_DIR / "MODEL_CARD.md").is_file()
    spec = shipped_spec(path)
    assert spec.name == "default" and spec.convention == "disparity"
    with safe_open(str(path), "pt") as handle:
        keys = list(handle.keys())
        dtypes = {handle.get_tensor(k).dtype for k in keys if "running" in k or "weight" in k}
    assert not any(k.startswith(("backbone.", "vit.embeddings", "vit.encoder")) for k in keys)
    import torch

    assert dtypes <= {torch.float16, torch.int64}


@pytest.mark.slow
def test_default_onnx_is_cached_under_the_weights_hash(default_onnx):
    from mde_ros.models.default_model import default_onnx_name, ensure_default_onnx
    from mde_ros.models.onnx_contract import read_spec

    assert default_onnx.name == default_onnx_name()
    assert read_spec(default_onnx).name == "default"
    stamp = os.stat(default_onnx).st_mtime_ns
    assert ensure_default_onnx(default_onnx.parent) == default_onnx
    assert os.stat(default_onnx).st_mtime_ns == stamp  # reused, not rebuilt


@pytest.mark.slow
def test_default_model_runs_on_a_real_castel_frame(default_onnx):
    from mde_ros.data.visp import castel_frames
    from mde_ros.inference.factory import create_backend
    from mde_ros.pipeline import DepthPipeline, Frame
    from mde_ros.training.metrics import baseline_predictions, score

    frame = castel_frames(indices=[25])[0]
    pipeline = DepthPipeline(create_backend("onnxruntime", default_onnx))
    result = pipeline.process(Frame(frame.rgb, frame.intrinsics))
    pipeline.close()
    prediction = result.prediction
    assert prediction.shape == frame.rgb.shape[:2] and np.isfinite(prediction).all()
    assert prediction.std() > 1e-3 * max(1e-6, abs(prediction.mean()))
    # it sees depth: better than the constant prior after scale-and-shift alignment
    model = score(prediction, frame.depth, relative=True)["abs_rel"]
    constant = score(baseline_predictions(*prediction.shape)["constant"], frame.depth, relative=True)[
        "abs_rel"
    ]
    assert model < constant


@pytest.mark.slow
def test_torch_backend_runs_the_default_model(default_onnx):
    """backend: torch on the node's own default model (its ONNX points back at the shipped weights)."""
    from mde_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
    from mde_ros.inference.torch_backend import TorchBackend
    from mde_ros.models.export import SOURCE_METADATA_KEY, read_metadata, smooth_pixels

    assert '"kind": "default"' in read_metadata(default_onnx)[SOURCE_METADATA_KEY]
    pixels = smooth_pixels(np.random.default_rng(0), 70, 98)
    with TorchBackend(default_onnx, threads=2) as backend, OnnxRuntimeBackend(default_onnx) as reference:
        got, expected = backend.infer(pixels), reference.infer(pixels)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
