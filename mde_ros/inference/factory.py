"""Backend selection: `backend` parameter -> a ready Backend for one ONNX file.

`auto` picks, in order: TensorRT (importable and a CUDA GPU present), ONNX Runtime with the CUDA
execution provider (onnxruntime-gpu), ONNX Runtime on CPU; it logs the choice and why, and falls
back to the next one when a candidate fails to start (e.g. an engine refused by its self-check).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from ..config import BACKENDS
from ..errors import BackendUnavailableError, MdeRosError
from .base import Backend

log = logging.getLogger(__name__)


def cuda_device_count() -> int:
    """Number of CUDA devices, via torch or cuda-bindings when present (0 when neither can tell)."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return 0
    err, count = cudart.cudaGetDeviceCount()
    return int(count) if int(err) == 0 else 0


def tensorrt_importable() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def create_backend(
    kind: str,
    onnx_path: str | Path,
    *,
    threads: int = 0,
    engine_dir: str | Path | None = None,
    precision: str = "fp16",
    input_size: int | None = None,
    min_shape: str = "",
    opt_shape: str = "",
    max_shape: str = "",
    fidelity_threshold: float | None = None,
    device: str = "auto",
    cuda_graphs: bool = False,
    show_progress: bool = False,
) -> Backend:
    """Create the backend named `kind` for `onnx_path` (see README: Backends).

    `precision`, `input_size`, `*_shape`, `fidelity_threshold`, `engine_dir` apply to TensorRT
    (profile around `input_size`, overridden by 'BxHxW' shapes); `device`/`cuda_graphs` to torch.
    """
    if kind not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    trt_kwargs = dict(
        engine_dir=engine_dir,
        precision=precision,
        input_size=input_size,
        shapes=(min_shape, opt_shape, max_shape),
        fidelity_threshold=fidelity_threshold,
        show_progress=show_progress,
    )
    if kind == "onnxruntime":
        return _onnxruntime(onnx_path, "auto" if device == "cuda" else "cpu", threads)
    if kind == "tensorrt":
        return _tensorrt(onnx_path, **trt_kwargs)
    if kind == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(
            onnx_path, device=device, precision=precision, cuda_graphs=cuda_graphs, threads=threads
        )
    return _auto(onnx_path, threads, trt_kwargs)


def _auto(onnx_path: str | Path, threads: int, trt_kwargs: dict) -> Backend:
    gpus = cuda_device_count()
    if tensorrt_importable() and gpus:
        try:
            backend = _tensorrt(onnx_path, **trt_kwargs)
            log.info("backend auto -> tensorrt: TensorRT is installed and %d CUDA GPU(s) found", gpus)
            return backend
        except MdeRosError as exc:
            log.warning("backend auto: TensorRT failed (%s); trying ONNX Runtime", exc)
    else:
        why = "TensorRT is not installed" if not tensorrt_importable() else "no CUDA GPU found"
        log.info("backend auto: not using TensorRT (%s)", why)
    from .onnxruntime_backend import available_providers

    if "CUDAExecutionProvider" in available_providers():
        backend = _onnxruntime(onnx_path, "cuda", threads)
        if backend.device == "CUDAExecutionProvider":
            log.info("backend auto -> onnxruntime CUDA: onnxruntime-gpu provides CUDAExecutionProvider")
            return backend
        backend.close()
        log.warning("backend auto: CUDAExecutionProvider did not start; using ONNX Runtime CPU")
    backend = _onnxruntime(onnx_path, "cpu", threads)
    log.info("backend auto -> onnxruntime CPU (no GPU execution provider available)")
    return backend


def _onnxruntime(onnx_path: str | Path, providers: str, threads: int) -> Backend:
    from .onnxruntime_backend import OnnxRuntimeBackend

    if providers == "cuda":
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]  # type: ignore[assignment]
    return OnnxRuntimeBackend(onnx_path, providers=providers, threads=threads)


def _tensorrt(
    onnx_path: str | Path,
    *,
    engine_dir,
    precision: str,
    input_size: int | None,
    shapes: tuple[str, str, str],
    fidelity_threshold: float | None,
    show_progress: bool,
) -> Backend:
    from ..models.onnx_contract import read_spec
    from .engine_cache import make_profile
    from .tensorrt_backend import DEFAULT_FIDELITY_THRESHOLD, TensorRTBackend, import_tensorrt

    import_tensorrt()  # a clear error before any other work
    if not cuda_device_count():
        raise BackendUnavailableError("TensorRT needs an NVIDIA GPU, and no CUDA device was found")
    spec = read_spec(onnx_path)
    profile = make_profile(input_size or spec.default_input_size, spec.patch_multiple, *shapes)
    return TensorRTBackend(
        onnx_path,
        engine_dir=engine_dir,
        precision=precision,
        profile=profile,
        fidelity_threshold=DEFAULT_FIDELITY_THRESHOLD if fidelity_threshold is None else fidelity_threshold,
        show_progress=show_progress,
    )
