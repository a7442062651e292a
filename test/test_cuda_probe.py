"""CUDA detection, the `device` parameter and `auto`'s fallback: the logic, with probes that answer
like a GPU machine would (no GPU here), and the real probes on this CPU machine."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mde_ros.errors import BackendUnavailableError
from mde_ros.inference import factory
from mde_ros.inference.cuda_probe import (
    CudaBindingsProbe,
    Device,
    GpuInfo,
    ProbeUnavailable,
    TorchProbe,
    cuda_report,
    detect_cuda,
    parse_device,
)

ORIN_NX = GpuInfo(0, "Orin", "8.7", 8, 15388 << 20)


class FakeProbe:
    """Answers like one CUDA package would on some machine."""

    def __init__(self, name: str, devices=None, missing: str = "", crash: Exception | None = None):
        self.name, self._devices, self._missing, self._crash = name, devices or [], missing, crash

    def devices(self):
        if self._crash:
            raise self._crash
        if self._missing:
            raise ProbeUnavailable(self._missing)
        return self._devices


def test_cpu_only_torch_no_longer_hides_a_gpu_seen_by_cuda_python():
    """The README install (CPU torch first) on a GPU machine: cuda-python still finds the GPU."""
    torch_cpu = FakeProbe("torch", missing="CPU-only build 2.13.0+cpu")
    report = detect_cuda((torch_cpu, FakeProbe("cuda-python", [ORIN_NX])))
    assert report.count == 1 and report.source == "cuda-python" and report.devices[0].sm_count == 8


def test_no_gpu_report_names_every_missing_package():
    report = detect_cuda(
        (
            FakeProbe("cuda-python", missing="not installed (pip install cuda-python)"),
            FakeProbe("torch", crash=RuntimeError("libcudart.so.12: cannot open shared object file")),
        )
    )
    assert report.count == 0 and report.source == ""
    why = report.why_none()
    assert "cuda-python: not installed (pip install cuda-python)" in why
    assert "torch: probe failed: RuntimeError: libcudart.so.12" in why  # a broken install is reported


def test_real_probes_on_this_machine_say_why_there_is_no_gpu():
    report = detect_cuda((CudaBindingsProbe(), TorchProbe()))
    if report.count:
        pytest.skip("a CUDA GPU is visible here")
    why = report.why_none()
    assert "cuda-python" in why and "torch" in why
    assert "pip install cuda-python" in why or "cudaGetDeviceCount" in why
    assert "CPU-only build" in why or "sees no CUDA device" in why or "not installed" in why


def test_device_parameter_values():
    assert parse_device("cpu") == Device("cpu")
    assert parse_device("cuda") == Device("cuda", 0)
    assert parse_device("CUDA:1") == Device("cuda", 1) and str(parse_device("cuda:1")) == "cuda:1"
    assert parse_device("auto").kind == "auto"
    for bad in ("gpu", "cuda:x", "cpu:1", "cuda:-1", ""):
        with pytest.raises(ValueError, match=r"auto \| cpu \| cuda \| cuda:N"):
            parse_device(bad)


def test_every_backend_honours_device(tiny_onnx):
    with factory.create_backend("onnxruntime", tiny_onnx, device="cpu", threads=1) as backend:
        assert backend.device == "CPUExecutionProvider"
    with factory.create_backend("auto", tiny_onnx, device="cpu", threads=1) as backend:
        assert backend.name == "onnxruntime" and backend.device == "CPUExecutionProvider"
    with factory.create_backend("torch", tiny_onnx, device="cpu", threads=1) as backend:
        assert backend.device == "cpu"
    with pytest.raises(BackendUnavailableError, match=r"auto \| cpu \| cuda"):
        factory.create_backend("onnxruntime", tiny_onnx, device="gpu0")
    if cuda_report().count == 0:
        with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
            factory.create_backend("onnxruntime", tiny_onnx, device="cuda:1")
        with pytest.raises(BackendUnavailableError, match="no CUDA device"):
            factory.create_backend("torch", tiny_onnx, device="cuda:1")


@pytest.mark.parametrize(
    "failure",
    [
        PermissionError(13, "Permission denied", "/opt/ros/engines/x.engine"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        TypeError("set_tensor_address(): incompatible function arguments"),  # a binding error
    ],
    ids=["permission", "oom", "binding"],
)
def test_auto_falls_back_on_any_tensorrt_failure_with_the_reason(tiny_onnx, monkeypatch, caplog, failure):
    """A GPU machine where building the engine fails for a reason that is not mde_ros's own."""
    report = detect_cuda((FakeProbe("cuda-python", [ORIN_NX]),))
    monkeypatch.setattr(factory, "cuda_report", lambda: report)
    monkeypatch.setattr(factory, "tensorrt_importable", lambda: True)

    def failing_tensorrt(*args, **kwargs):
        raise failure

    monkeypatch.setattr(factory, "_tensorrt", failing_tensorrt)
    caplog.set_level(logging.INFO, logger="mde_ros.inference.factory")
    with factory.create_backend("auto", tiny_onnx, threads=1) as backend:
        assert backend.name == "onnxruntime"
        assert backend.infer(np.zeros((1, 3, 28, 42), np.float32)).shape == (1, 28, 42)
    assert f"TensorRT failed ({type(failure).__name__}: {failure}" in caplog.text
    assert "a GPU is visible but ONNX Runtime has no CUDAExecutionProvider" in caplog.text
    assert "pip install onnxruntime-gpu" in caplog.text


def test_auto_names_the_missing_tensorrt_package(tiny_onnx, monkeypatch, caplog):
    report = detect_cuda((FakeProbe("cuda-python", [ORIN_NX]),))
    monkeypatch.setattr(factory, "cuda_report", lambda: report)
    monkeypatch.setattr(factory, "tensorrt_importable", lambda: False)
    caplog.set_level(logging.INFO, logger="mde_ros.inference.factory")
    with factory.create_backend("auto", tiny_onnx, threads=1) as backend:
        assert backend.name == "onnxruntime"
    assert "not using TensorRT (not installed: pip install tensorrt-cu12" in caplog.text
    assert "--system-site-packages" in caplog.text  # the Jetson hint


def test_device_node_parameter_is_checked():
    from mde_ros.ros.parameters import BY_NAME, validate

    assert BY_NAME["device"].default == "auto" and BY_NAME["device"].read_only
    assert validate({"device": "cuda:1"}) == []
    assert validate({"device": "gpu"}) == [
        "device: device must be one of auto | cpu | cuda | cuda:N, got 'gpu'"
    ]
