"""Backend selection: `backend` + `device` parameters -> a ready Backend for one ONNX file.

`auto` picks, in order: TensorRT (importable and a CUDA GPU visible), ONNX Runtime with the CUDA
execution provider (onnxruntime-gpu), ONNX Runtime on CPU. It logs the choice and why (naming the
package that is missing), and falls back to the next candidate when one fails to start for any
reason (an engine refused by its self-check, CUDA out of memory, a converter or binding error).
`device` (auto | cpu | cuda | cuda:N) is honoured by every backend.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

from ..config import BACKENDS, PRECISIONS
from ..errors import BackendUnavailableError
from .base import Backend
from .cuda_probe import ORT_GPU_HINT, TENSORRT_HINT, CudaReport, Device, cuda_report, parse_device
from .onnxruntime_backend import available_providers

log = logging.getLogger(__name__)


def cuda_device_count() -> int:
    """Number of CUDA devices any probe sees (cuda-python, then torch); 0 when none can tell."""
    return cuda_report().count


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
    frame_size: tuple[int, int] | None = None,
    fidelity_threshold: float | None = None,
    device: str = "auto",
    cuda_graphs: bool = False,
    show_progress: bool = False,
    static_from_first_input: bool = False,
) -> Backend:
    """Create the backend named `kind` for `onnx_path` on `device` (see README: Backends).

    `precision`, `input_size`, `*_shape`, `frame_size`, `fidelity_threshold`, `engine_dir` apply to
    TensorRT (profile around `input_size`, static when the camera's (height, width) `frame_size` is
    known, overridden by 'BxHxW' shapes); `precision`/`cuda_graphs` to torch as well.
    `static_from_first_input` (the node's `engine_profile: static`): when TensorRT runs (chosen or
    picked by `auto`) and neither `frame_size` nor a shape is given, every start-up check is done
    now and the engine is built or loaded at the first frame, with a static profile for its network
    input (`deferred.DeferredEngine`). The other backends are created as without it.
    """
    if kind not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    try:
        dev = parse_device(device)
    except ValueError as exc:
        raise BackendUnavailableError(str(exc)) from None
    trt_kwargs = dict(
        engine_dir=engine_dir,
        precision=precision,
        input_size=input_size,
        shapes=(min_shape, opt_shape, max_shape),
        frame_size=frame_size,
        fidelity_threshold=fidelity_threshold,
        show_progress=show_progress,
        defer=static_from_first_input and frame_size is None and not any((min_shape, opt_shape, max_shape)),
    )
    if kind == "onnxruntime":
        return _onnxruntime(onnx_path, dev, threads)
    if kind == "tensorrt":
        return _tensorrt(onnx_path, dev, **trt_kwargs)
    if kind == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(
            onnx_path, device=str(dev), precision=precision, cuda_graphs=cuda_graphs, threads=threads
        )
    return _auto(onnx_path, dev, threads, trt_kwargs)


def _auto(onnx_path: str | Path, dev: Device, threads: int, trt_kwargs: dict) -> Backend:
    if dev.kind == "cpu":
        log.info("backend auto -> onnxruntime CPU (device: cpu)")
        return _onnxruntime(onnx_path, dev, threads)
    report = cuda_report()
    if not tensorrt_importable():
        log.info("backend auto: not using TensorRT (not installed: %s)", TENSORRT_HINT)
    elif not report.devices:
        log.info("backend auto: not using TensorRT (%s)", report.why_none())
    else:
        try:
            # A deferred engine falls back the same way at its first frame, if it cannot be made then.
            fallback = functools.partial(_auto_onnxruntime, onnx_path, dev, threads, report)
            backend = _tensorrt(onnx_path, dev, **trt_kwargs, fallback=fallback)
            log.info("backend auto -> tensorrt: TensorRT is installed and %d CUDA GPU(s) found", report.count)
            return backend
        except Exception as exc:  # any failure (OOM, parser, refused engine) falls back, with the reason
            log.warning(
                "backend auto: TensorRT failed (%s: %s); trying ONNX Runtime", type(exc).__name__, exc
            )
    return _auto_onnxruntime(onnx_path, dev, threads, report)


def _auto_onnxruntime(onnx_path: str | Path, dev: Device, threads: int, report: CudaReport) -> Backend:
    """`auto` after TensorRT: ONNX Runtime CUDA when onnxruntime-gpu has it, else ONNX Runtime CPU."""
    if "CUDAExecutionProvider" in available_providers():
        try:
            backend = _onnxruntime(onnx_path, Device("cuda", dev.index), threads)
            if backend.device == "CUDAExecutionProvider":
                log.info("backend auto -> onnxruntime CUDA: onnxruntime-gpu provides CUDAExecutionProvider")
                return backend
            backend.close()
            log.warning("backend auto: CUDAExecutionProvider did not start; using ONNX Runtime CPU")
        except Exception as exc:
            log.warning("backend auto: ONNX Runtime CUDA failed (%s: %s)", type(exc).__name__, exc)
        why = "the GPU backends failed"
    elif report.devices:
        why = f"a GPU is visible but ONNX Runtime has no CUDAExecutionProvider: {ORT_GPU_HINT}"
    else:
        why = "no GPU execution provider available"
    backend = _onnxruntime(onnx_path, Device("cpu"), threads)
    log.info("backend auto -> onnxruntime CPU (%s)", why)
    return backend


def _onnxruntime(onnx_path: str | Path, dev: Device, threads: int) -> Backend:
    from .onnxruntime_backend import OnnxRuntimeBackend

    if dev.kind == "cpu":
        return OnnxRuntimeBackend(onnx_path, providers="cpu", threads=threads)
    if "CUDAExecutionProvider" not in available_providers():
        if dev.kind == "auto":
            return OnnxRuntimeBackend(onnx_path, providers="cpu", threads=threads)
        raise BackendUnavailableError(
            f"device {dev} needs ONNX Runtime's CUDAExecutionProvider: {ORT_GPU_HINT}"
        )
    providers = [("CUDAExecutionProvider", {"device_id": dev.index}), "CPUExecutionProvider"]
    return OnnxRuntimeBackend(onnx_path, providers=providers, threads=threads)


def _tensorrt(
    onnx_path: str | Path,
    dev: Device,
    *,
    engine_dir,
    precision: str,
    input_size: int | None,
    shapes: tuple[str, str, str],
    frame_size: tuple[int, int] | None,
    fidelity_threshold: float | None,
    show_progress: bool,
    defer: bool = False,
    fallback: Callable[[], Backend] | None = None,
) -> Backend:
    """A TensorRT backend, or with `defer` a `DeferredEngine` whose engine waits for the first
    input's shape (`fallback`: what `auto` uses if that engine cannot be made then)."""
    from ..models.onnx_contract import read_spec
    from .engine_cache import make_profile
    from .tensorrt_backend import DEFAULT_FIDELITY_THRESHOLD, TensorRTBackend, import_tensorrt

    import_tensorrt()  # a clear error before any other work
    if dev.kind == "cpu":
        raise BackendUnavailableError("the TensorRT backend runs on a CUDA device; device is cpu")
    if precision not in PRECISIONS:
        raise BackendUnavailableError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    report = cuda_report()
    if not report.devices:
        raise BackendUnavailableError(f"TensorRT needs an NVIDIA GPU: {report.why_none()}")
    if dev.index >= report.count:
        raise BackendUnavailableError(f"device {dev} does not exist: {report.count} CUDA device(s) visible")
    spec = read_spec(onnx_path)  # a foreign ONNX fails here, at start-up, not at the first frame
    gpu = report.devices[dev.index]

    def engine(profile) -> Backend:
        threshold = DEFAULT_FIDELITY_THRESHOLD if fidelity_threshold is None else fidelity_threshold
        return TensorRTBackend(
            onnx_path,
            engine_dir=engine_dir,
            precision=precision,
            profile=profile,
            fidelity_threshold=threshold,
            show_progress=show_progress,
            gpu=gpu,
        )

    if defer:
        from .deferred import DeferredEngine

        planned = f"cuda:{gpu.index} ({gpu.name}), TensorRT {precision}"
        return DeferredEngine(spec, engine, planned, fallback)
    short = input_size or spec.default_input_size
    return engine(make_profile(short, spec.patch_multiple, *shapes, frame_size=frame_size))
