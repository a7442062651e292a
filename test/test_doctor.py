"""`mde-ros doctor` on this CPU-only machine: a complete, truthful report that ends in CPU figures."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mde_ros.inference.cuda_probe import cuda_report


def run_doctor(model: str, engine_dir, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "mde_ros.cli", "doctor", "--model", model, "--engine-dir", str(engine_dir)]
    return subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=300)


def test_doctor_reports_everything_and_ends_in_cpu_figures(tiny_onnx, tmp_path):
    extra = ["--sizes", "28,default", "--frames", "2", "--warmup", "1", "--threads", "1"]
    result = run_doctor(tiny_onnx, tmp_path, *extra)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for section in ("== system", "== CUDA", "== inference libraries", "== model", "== summary"):
        assert section in out, section
    for label in (
        "cuda-python",
        "torch",
        "TensorRT",
        "ONNX Runtime",
        "fidelity vs ORT fp32",
        "pipeline / bare",
        "point cloud",
    ):
        assert label in out, label
    # the node's TensorRT profiles for this camera, printed without TensorRT
    assert "engine profile 28      static (node default) min 1x28x42, opt 1x28x42, max 1x28x42" in out
    # two sizes: 28 and the tiny model's default, each bare vs pipeline with median and p90
    assert out.count("bare network") == 2 and out.count("median") >= 4 and out.count("p90") >= 4
    summary = out.split("== summary")[1].strip().splitlines()
    assert len(summary) == 3 and summary[0].strip().startswith("640x480 -> 28x42")
    if cuda_report().count == 0:  # this machine: says why there is no GPU, names what to install
        assert "CPU figures: no CUDA GPU visible" in summary[-1]
        assert "pip install cuda-python" in out or "cudaGetDeviceCount" in out
        assert "onnxruntime on CPUExecutionProvider" in summary[0]
        assert out.count("point cloud            back-projected on the host") == 2
        # fidelity on CPU: the fp16 converter's ONNX at the profile corners, with numbers
        fidelity = [line for line in out.splitlines() if "fidelity vs ORT fp32" in line]
        assert len(fidelity) == 6 and all(
            "fp16 converter ONNX" in line and "rel L1" in line for line in fidelity
        )
        assert list(tmp_path.glob("*-fp16v*.onnx"))  # cached in the engine folder, not next to the model


def test_doctor_reports_a_backend_that_cannot_start(tiny_onnx, tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    result = run_doctor(tiny_onnx, tmp_path, "--backend", "tensorrt", "--sizes", "28")
    assert result.returncode == 1  # nothing ran: not a success
    assert "backend tensorrt did not start" in result.stdout
    assert "BackendUnavailableError: TensorRT is not installed (pip install tensorrt-cu12" in result.stdout
