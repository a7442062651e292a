"""Backends on CPU: ONNX Runtime vs torch parity, torch weights from the ONNX's source, `auto` choice."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from mde_ros.errors import BackendUnavailableError, ModelNotFoundError
from mde_ros.inference.factory import create_backend, tensorrt_importable
from mde_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
from mde_ros.inference.torch_backend import TorchBackend
from mde_ros.models.checkpoints import Checkpoint, hf_to_original, load_checkpoint
from mde_ros.models.export import export_onnx, smooth_pixels
from mde_ros.models.testing import tiny_depth_anything_spec
from mde_ros.models.torch_models import build_depth_anything


@pytest.fixture(scope="module")
def scaled_onnx(tmp_path_factory):
    """Tiny model with outputs of order 1 (the default tiny init gives ~1e-8), random-weight source."""
    spec = tiny_depth_anything_spec("metric", name="random-tiny-scaled", initializer_range=0.15)
    path = tmp_path_factory.mktemp("backends") / "scaled.onnx"
    model = build_depth_anything(spec, seed=11)
    return export_onnx(model, spec, path, source=Checkpoint(kind="random", seed=11).to_json())


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_torch_backend_matches_onnxruntime_on_cpu(scaled_onnx):
    pixels = smooth_pixels(np.random.default_rng(0), 70, 112, batch=2)
    reference, backend = OnnxRuntimeBackend(scaled_onnx, threads=1), TorchBackend(scaled_onnx, threads=1)
    with reference, backend:
        assert backend.device == "cpu" and backend.precision == "fp32"
        expected = reference.infer(pixels)
        got = backend.infer(pixels)
    assert got.shape == expected.shape == (2, 70, 112)
    assert np.abs(expected).mean() > 0.1  # a meaningful comparison, not two near-zero maps
    assert _rel(got, expected) <= 1e-4


def test_torch_backend_loads_the_checkpoint_the_onnx_came_from(tmp_path):
    spec = tiny_depth_anything_spec(initializer_range=0.15)
    original = hf_to_original(build_depth_anything(spec, seed=12).state_dict(), 4)
    pth = tmp_path / "weights.pth"
    torch.save(original, pth)
    model, _, source = load_checkpoint(pth, spec)
    onnx_path = export_onnx(model, spec, tmp_path / "m.onnx", source=source.to_json())
    pixels = smooth_pixels(np.random.default_rng(1), 42, 70)
    with TorchBackend(onnx_path) as backend, OnnxRuntimeBackend(onnx_path) as reference:
        assert _rel(backend.infer(pixels), reference.infer(pixels)) <= 1e-4
    # The checkpoint changed after the export: refused rather than silently running other weights.
    original["depth_head.scratch.output_conv1.bias"] += 1
    torch.save(original, pth)
    with pytest.raises(ModelNotFoundError, match="changed since"):
        TorchBackend(onnx_path)
    pth.unlink()
    with pytest.raises(ModelNotFoundError, match="is gone"):
        TorchBackend(onnx_path)


def test_torch_backend_needs_a_source(tmp_path):
    spec = tiny_depth_anything_spec()
    path = export_onnx(build_depth_anything(spec, seed=0), spec, tmp_path / "nosource.onnx")
    with pytest.raises(BackendUnavailableError, match="which checkpoint"):
        TorchBackend(path)


def test_auto_picks_onnxruntime_cpu_here_and_says_why(tiny_onnx, caplog):
    caplog.set_level(logging.INFO, logger="mde_ros.inference.factory")
    with create_backend("auto", tiny_onnx, threads=1) as backend:
        assert backend.name == "onnxruntime"
        assert backend.device == "CPUExecutionProvider"
        assert backend.infer(np.zeros((1, 3, 28, 42), np.float32)).shape == (1, 28, 42)
    text = caplog.text
    assert "backend auto -> onnxruntime CPU" in text
    assert "not using TensorRT" in text


@pytest.mark.skipif(tensorrt_importable(), reason="TensorRT is installed here")
def test_tensorrt_backend_unavailable_is_explained(tiny_onnx):
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        create_backend("tensorrt", tiny_onnx)


def test_unknown_backend_and_missing_cuda_provider(tiny_onnx):
    with pytest.raises(BackendUnavailableError, match="choose one of"):
        create_backend("openvino", tiny_onnx)
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        OnnxRuntimeBackend(tiny_onnx, providers="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="no CUDA"):
            create_backend("torch", tiny_onnx, device="cuda")


def test_torch_backend_via_factory_on_cpu(tiny_onnx):
    with create_backend("torch", tiny_onnx, threads=1) as backend:
        assert backend.name == "torch"
        out = backend.infer(np.zeros((1, 3, 28, 56), np.float32))
    assert out.shape == (1, 28, 56) and out.dtype == np.float32


def _run_command(module, argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    module.configure(parser)
    return module.run(parser.parse_args(argv))


def test_bench_command_prints_bare_backend_pipeline_and_torch(tiny_onnx, capsys):
    from mde_ros.commands import bench

    argv = ["--model", tiny_onnx, "--frames", "2", "--warmup", "1", "--threads", "1", "--input-size", "56"]
    assert _run_command(bench, [*argv, "--compare-torch"]) == 0
    out = capsys.readouterr().out
    assert "network input 1x3x56x70" in out
    labels = ("bare session.run", "onnxruntime backend.infer", "pipeline 640x480", "torch eager", "peak RSS")
    for label in labels:
        assert label in out, label
    assert "x bare)" in out and "pipeline overhead" in out
    # the pre-processing comparison: the run's size, then 518 (the default extra size)
    lines = [line for line in out.splitlines() if "preprocess 640x480 ->" in line]
    assert [line.split("->")[1].split(":")[0].strip() for line in lines] == ["56x70", "518x686"]
    assert "max |input diff| 0.00e+00" in lines[1]  # upscaling: the same cubic resize as before


def test_models_and_build_engine_commands(tiny_onnx, capsys, tmp_path, monkeypatch):
    from mde_ros.commands import build_engine, models

    monkeypatch.setenv("MDE_ROS_WEIGHTS", str(tmp_path))
    assert _run_command(models, []) == 0
    assert "mde-ros download depth-anything-v2-metric-indoor-small" in capsys.readouterr().out
    assert _run_command(models, ["--verbose-urls"]) == 0
    out = capsys.readouterr().out
    assert "depth_anything_v2_metric_hypersim_vits.pth" in out
    assert "https://huggingface.co/depth-anything/Depth-Anything-V2-Metric-VKITTI-Small" in out
    if not tensorrt_importable():
        with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
            _run_command(build_engine, ["--model", tiny_onnx, "--engine-dir", str(tmp_path)])


def test_torch_backend_numerics_sdpa_and_half_weights():
    """What the torch backend does on CUDA, checked on CPU: SDPA attention is the same function as the
    exported eager attention, and `.half()` weights stay within fp16 error of fp32."""
    from mde_ros.inference.torch_backend import use_sdpa
    from mde_ros.models.torch_models import depth_module

    spec = tiny_depth_anything_spec("metric", initializer_range=0.15)
    model = build_depth_anything(spec, seed=3)
    pixels = torch.from_numpy(smooth_pixels(np.random.default_rng(0), 70, 98))
    with torch.no_grad():
        eager = depth_module(model)(pixels).numpy()
        use_sdpa(model)
        assert model.config.backbone_config._attn_implementation == "sdpa"
        sdpa = depth_module(model)(pixels).numpy()
        half = depth_module(model).to(torch.float16)(pixels.half()).float().numpy()
    assert _rel(sdpa, eager) <= 1e-5
    assert 0 < float(np.abs(half - eager).sum() / np.abs(eager).sum()) <= 5e-3
