"""TensorRT backend (native Python API, 10.x and 11.x), imported lazily.

Build: ONNX -> engine with one optimization profile for `pixel_values` (min/opt/max from
parameters), FP16 by default, with a timing cache in the engine folder. TensorRT 10.x:
`BuilderFlag.FP16` on the fp32 ONNX. TensorRT 11.x removed that flag (networks are strongly
typed), so the ONNX is first converted to mixed fp16 by `mde_ros.models.fp16` (fp32 I/O, cached
in the engine folder by content hash) and built strongly typed. Every fresh engine passes a
fidelity self-check against ONNX Runtime fp32 at each profile corner before it is cached; a
refusal is remembered so that the next start does not rebuild it.

Run: device buffers allocated once for the profile's max shape (torch CUDA tensors when torch has
CUDA, else `cuda.bindings.runtime`), `execute_async_v3` on one stream; with torch CUDA,
`predict_frame` pre/post-processes on the GPU straight into / out of the bindings (and computes
the point cloud there when it is wanted).

Not tested on this project's CI (no GPU, TensorRT not installable): the TensorRT-free logic lives in
`engine_cache` and `models.fp16`, which are.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..config import PRECISIONS
from ..errors import BackendUnavailableError, InvalidModelError
from ..logsteps import long_step
from ..models.onnx_contract import file_sha256, read_spec
from ..models.spec import INPUT_PIXELS, INPUT_PROMPT, OUTPUT_DEPTH
from .base import Backend, DevicePrediction
from .cuda_probe import CUDA_PYTHON_HINT, TENSORRT_HINT, GpuInfo, cuda_report
from .engine_cache import (
    EngineFidelityError,
    EngineKey,
    Profile,
    atomic_write,
    check_fidelity,
    default_profile,
    fidelity_prompt,
    fidelity_report,
    remember_refusal,
    remembered_refusal,
    timing_cache_path,
    validate_cached_engine,
    write_engine,
)

log = logging.getLogger(__name__)

# Relative L1 vs ORT fp32. The fp16 converter's graph of the default model (composed ONNX, encoder
# LayerNorms fused) measures 2.0e-4 .. 3.1e-4 in ONNX Runtime at the 6 profile corners at 252 and 518;
# 2e-3 (~6x the worst) leaves room for TensorRT's own fp16 kernels while catching broken builds
# (TensorRT 10.3's wrong Depth Anything output).
DEFAULT_FIDELITY_THRESHOLD = 2e-3
DEFAULT_WORKSPACE_GB = 4.0


def import_tensorrt():
    """`tensorrt`, or BackendUnavailableError saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"TensorRT is not installed ({TENSORRT_HINT}): {exc}. Use backend onnxruntime or torch."
        ) from exc
    return trt


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


class _Cuda:
    """Device memory and one stream on CUDA device `index`: torch when it has CUDA, else cuda-bindings."""

    def __init__(self, index: int = 0) -> None:
        self.torch = None
        self.index = index
        try:
            import torch

            if torch.cuda.is_available():
                self.torch = torch
        except ImportError:
            pass
        if self.torch is None:
            try:
                from cuda.bindings import runtime as cudart
            except ImportError as exc:
                raise BackendUnavailableError(
                    f"the TensorRT backend needs torch with CUDA or cuda-bindings ({CUDA_PYTHON_HINT})"
                ) from exc
            self.cudart = cudart
            self._check(cudart.cudaSetDevice(index))
            self._stream = self._check(cudart.cudaStreamCreate())
        else:
            self.device = self.torch.device("cuda", index)
            self.torch.cuda.set_device(self.device)  # TensorRT's runtime uses the current device
            self._torch_stream = self.torch.cuda.Stream(device=self.device)
        self._allocs: list = []
        self._pinned: list = []

    def _check(self, result):
        err, *values = result
        if int(err) != 0:
            raise BackendUnavailableError(f"CUDA error {err}")
        return values[0] if len(values) == 1 else values

    @property
    def torch_stream(self):
        return self._torch_stream

    @property
    def stream(self) -> int:
        return self._torch_stream.cuda_stream if self.torch else int(self._stream)

    def alloc(self, nbytes: int):
        """A device buffer; returns (handle, device pointer)."""
        if self.torch:
            buf = self.torch.empty(nbytes, dtype=self.torch.uint8, device=self.device)
            self._allocs.append(buf)
            return buf, buf.data_ptr()
        ptr = self._check(self.cudart.cudaMalloc(nbytes))
        self._allocs.append(ptr)
        return ptr, int(ptr)

    def pinned(self, nbytes: int) -> np.ndarray:
        """Page-locked host memory as a uint8 array: copies from/to it are really asynchronous."""
        if self.torch:
            tensor = self.torch.empty(nbytes, dtype=self.torch.uint8, pin_memory=True)
            self._pinned.append(tensor)
            return tensor.numpy()
        ptr = self._check(self.cudart.cudaMallocHost(nbytes))
        self._pinned.append(ptr)
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(int(ptr)))

    def to_device(self, dst_ptr: int, host: np.ndarray) -> None:
        """Asynchronous copy on the stream; `host` is (a slice of) a `pinned` uint8 array."""
        if self.torch:
            with self.torch.cuda.stream(self._torch_stream):
                self._view(dst_ptr, host.nbytes).copy_(self.torch.from_numpy(host), non_blocking=True)
            return
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.cudart.cudaMemcpyAsync(dst_ptr, host.ctypes.data, host.nbytes, kind, self._stream))

    def to_host(self, host: np.ndarray, src_ptr: int) -> None:
        """Asynchronous copy on the stream into (a slice of) a `pinned` uint8 array; then `synchronize`."""
        if self.torch:
            with self.torch.cuda.stream(self._torch_stream):
                self.torch.from_numpy(host).copy_(self._view(src_ptr, host.nbytes), non_blocking=True)
            return
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.cudart.cudaMemcpyAsync(host.ctypes.data, src_ptr, host.nbytes, kind, self._stream))

    def _view(self, ptr: int, nbytes: int):
        for buf in self._allocs:
            base = buf.data_ptr()
            if base <= ptr < base + buf.numel():
                return buf[ptr - base : ptr - base + nbytes]
        raise ValueError("pointer not owned by this allocator")

    def synchronize(self) -> None:
        if self.torch:
            self._torch_stream.synchronize()
        else:
            self._check(self.cudart.cudaStreamSynchronize(self._stream))

    def close(self) -> None:
        if self.torch is None:
            for ptr in self._allocs:
                self.cudart.cudaFree(ptr)
            for ptr in self._pinned:
                self.cudart.cudaFreeHost(ptr)
            self.cudart.cudaStreamDestroy(self._stream)
        self._allocs.clear()
        self._pinned.clear()


class _ProgressPrinter:
    """Console progress for engine builds (TensorRT calls it via IProgressMonitor)."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.start = time.perf_counter()

    def __call__(self, phase: str, step: int, steps: int) -> None:
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"\r[{elapsed:6.1f} s] {phase[:50]:50s} {step}/{steps}   ")
        self.stream.flush()


def _progress_monitor(trt, callback: Callable[[str, int, int], None]):
    """An `IProgressMonitor` forwarding phase progress to `callback` (TensorRT >= 10)."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class Monitor(base):
        def __init__(self) -> None:
            base.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.steps[phase_name] = num_steps
            callback(phase_name, 0, num_steps)

        def step_complete(self, phase_name, step):
            callback(phase_name, step + 1, self.steps.get(phase_name, 0))
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            self.steps.pop(phase_name, None)

    return Monitor()


def profile_shapes(profile: Profile, input_shapes: dict[str, tuple]) -> dict[str, tuple]:
    """(min, opt, max) per network input for `IOptimizationProfile.set_shape`: `pixel_values` from
    the profile; `prompt_ids` [B, L] (LLM-MDE) with the profile's batch range and the graph's fixed
    prompt length L. `input_shapes`: the parsed network's inputs (dynamic dimensions are -1)."""
    shapes = {INPUT_PIXELS: profile.tensor_shapes()}
    if INPUT_PROMPT in input_shapes:
        dims = tuple(input_shapes[INPUT_PROMPT])
        if len(dims) != 2 or int(dims[1]) <= 0:
            raise InvalidModelError(f"{INPUT_PROMPT} must be [batch, fixed prompt length], got {list(dims)}")
        length = int(dims[1])
        shapes[INPUT_PROMPT] = tuple((b, length) for b, _, _ in (profile.min, profile.opt, profile.max))
    unknown = sorted(set(input_shapes) - set(shapes))
    if unknown:
        raise InvalidModelError(f"network inputs {unknown} are not in the mde_ros contract")
    return shapes


def build_serialized_engine(
    onnx_path: Path,
    profile: Profile,
    precision: str,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
    progress: Callable[[str, int, int], None] | None = None,
    cache_dir: Path | None = None,
    timing_cache: Path | None = None,
) -> tuple[bytes, dict]:
    """Build an engine for `onnx_path`; returns its serialized bytes and the recipe (for the sidecar).

    TensorRT 11 fp16: the fp16 converter's ONNX is cached in `cache_dir` by content hash.
    `timing_cache`, when given, is loaded before and saved after the build (builds take minutes).
    """
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    source = onnx_path
    strongly_typed = precision == "fp16" and trt_major(trt) >= 11
    recipe: dict = {"precision": precision, "profile": profile.describe(), "workspace_gb": workspace_gb}
    if strongly_typed:  # TensorRT 11: the precision lives in the ONNX graph itself
        from ..models.fp16 import CONVERTER_VERSION, ensure_converted

        source = ensure_converted(onnx_path, Path(cache_dir or onnx_path.parent))
        recipe.update(mode="strongly typed, fp16 converter ONNX", converter_version=CONVERTER_VERSION)
    flags = 0
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InvalidModelError(f"TensorRT could not parse {source}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)  # TensorRT 10.x weak typing
        # No layer pinned to fp32: opset-17 LayerNormalization becomes INormalizationLayer, which
        # computes in fp32 by default, and pinned Softmax layers would block fused attention.
        recipe.update(mode="BuilderFlag.FP16")
    trt_profile = builder.create_optimization_profile()
    inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    for name, shapes in profile_shapes(profile, inputs).items():
        trt_profile.set_shape(name, *shapes)
    config.add_optimization_profile(trt_profile)
    cache = _attach_timing_cache(config, timing_cache)
    if progress is not None:
        monitor = _progress_monitor(trt, progress)
        if monitor is not None:
            config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InvalidModelError(f"TensorRT failed to build an engine for {onnx_path} (see its log above)")
    if cache is not None:
        atomic_write(timing_cache, bytes(cache.serialize()))
        recipe["timing_cache"] = timing_cache.name
    recipe["tensorrt"] = str(trt.__version__)
    return bytes(serialized), recipe


def _attach_timing_cache(config, path: Path | None):
    """Load `path` (or start empty) as the builder's timing cache; a stale or corrupt file is ignored."""
    if path is None:
        return None
    data = b""
    if path.is_file():
        data = path.read_bytes()
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):
        log.warning("timing cache %s not usable (other TensorRT or device?); starting an empty one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | Path,
        engine_dir: str | Path | None = None,
        precision: str = "fp16",
        profile: Profile | None = None,
        fidelity_threshold: float = DEFAULT_FIDELITY_THRESHOLD,
        workspace_gb: float = DEFAULT_WORKSPACE_GB,
        show_progress: bool = False,
        gpu: GpuInfo | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}")
        trt = import_tensorrt()
        super().__init__(read_spec(onnx_path))
        from .. import paths

        if gpu is None:
            devices = cuda_report().devices
            if not devices:
                raise BackendUnavailableError(f"TensorRT needs an NVIDIA GPU: {cuda_report().why_none()}")
            gpu = devices[0]
        self.onnx_path = Path(onnx_path)
        self.profile = profile or default_profile(self.spec.default_input_size, self.spec.patch_multiple)
        self.precision = precision
        self.gpu = gpu
        self.cuda = _Cuda(gpu.index)
        self.key = EngineKey(
            onnx_stem=self.onnx_path.stem,
            onnx_sha256=file_sha256(self.onnx_path),
            trt_version=str(trt.__version__),
            gpu_name=gpu.name,
            compute_capability=gpu.compute_capability,
            precision=precision,
            profile=self.profile.slug(),
            sm_count=gpu.sm_count,
            total_memory_mb=gpu.total_memory >> 20,
        )
        self.engine_dir = Path(engine_dir or paths.engine_dir())
        self.engine_path = self.engine_dir / self.key.file_name()
        self.build_seconds = 0.0
        self.fidelity: list[dict] = []
        data, why = validate_cached_engine(self.engine_path, self.key)
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(data) if data else None
        if data and engine is None:
            why = "cached engine failed to deserialize (TensorRT/driver mismatch?)"
        if engine is None:
            refused = remembered_refusal(self.engine_path, self.key, fidelity_threshold)
            if refused:
                raise EngineFidelityError(refused)
            log.warning("building TensorRT engine %s (%s); this can take minutes", self.engine_path.name, why)
            self._build(fidelity_threshold, workspace_gb, show_progress)  # sets up the context too
        else:
            log.info("using cached TensorRT engine %s", self.engine_path)
            self._setup(engine)

    def _build(self, threshold: float, workspace_gb: float, show_progress: bool) -> None:
        start = time.perf_counter()
        progress = _ProgressPrinter() if show_progress else None
        with long_step(log, f"building TensorRT engine {self.engine_path.name}", announce=False):
            data, recipe = build_serialized_engine(
                self.onnx_path,
                self.profile,
                self.precision,
                workspace_gb,
                progress,
                cache_dir=self.engine_dir,
                timing_cache=timing_cache_path(self.engine_dir, self.key),
            )
        self.build_seconds = time.perf_counter() - start
        if progress:
            sys.stderr.write("\n")
        engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise InvalidModelError("TensorRT could not deserialize the engine it just built")
        self._setup(engine)
        reports = self.self_check(threshold)
        write_engine(self.engine_path, data, self.key, self.build_seconds, reports, recipe)
        log.info(
            "built %s in %.1f s; fidelity vs ORT fp32: worst rel L1 %.2e over %d shapes",
            self.engine_path.name,
            self.build_seconds,
            max(r["rel_l1"] for r in reports),
            len(reports),
        )

    def self_check(self, threshold: float) -> list[dict]:
        """Engine vs ONNX Runtime fp32 on image-like inputs at every distinct profile shape (two
        inputs for a static profile); a refusal is remembered next to the engine so the next start
        does not rebuild it."""
        from .engine_cache import fidelity_cases, fidelity_inputs
        from .onnxruntime_backend import OnnxRuntimeBackend

        reports = []
        with OnnxRuntimeBackend(self.onnx_path, providers="cpu") as reference:
            for shape, seed in fidelity_cases(self.profile):
                pixels = fidelity_inputs(shape, self.spec, seed)
                prompt = fidelity_prompt(self.spec, pixels)
                report = fidelity_report(reference.infer(pixels, prompt), self.infer(pixels, prompt))
                reports.append({"shape": list(shape), "seed": seed, **report})
        worst = max(reports, key=lambda r: r["rel_l1"])
        try:
            check_fidelity(
                worst,
                threshold,
                f"TensorRT {self.precision} engine for {self.onnx_path.name} at {worst['shape']}",
            )
        except EngineFidelityError:
            remember_refusal(self.engine_path, self.key, reports, threshold)
            raise
        self.fidelity = reports
        return reports

    def _setup(self, engine) -> None:
        trt = self._trt
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        expected = [INPUT_PIXELS] + ([INPUT_PROMPT] if self.spec.needs_prompt else [])
        if sorted(inputs) != sorted(expected) or outputs != [OUTPUT_DEPTH]:
            raise InvalidModelError(f"engine I/O {inputs} -> {outputs} does not follow the mde_ros contract")
        if self.spec.needs_prompt:  # int64 [B, L], copied with every frame (a few hundred bytes)
            nbytes = self.profile.max[0] * self.spec.prompt_length * 8
            self._prompt_buf, self._prompt_ptr = self.cuda.alloc(nbytes)
            self._host_prompt = self.cuda.pinned(nbytes)
            self.context.set_tensor_address(INPUT_PROMPT, self._prompt_ptr)
        # One allocation each for the profile's largest shape, reused for every frame.
        batch, height, width = self.profile.max
        self._in_buf, self._in_ptr = self.cuda.alloc(batch * 3 * height * width * 4)
        self._out_buf, self._out_ptr = self.cuda.alloc(batch * height * width * 4)
        # Pinned staging for `infer` (numpy in/out): async copies, one synchronisation per frame.
        self._host_in = self.cuda.pinned(batch * 3 * height * width * 4)
        self._host_out = self.cuda.pinned(batch * height * width * 4)
        self.context.set_tensor_address(INPUT_PIXELS, self._in_ptr)
        self.context.set_tensor_address(OUTPUT_DEPTH, self._out_ptr)

    @property
    def device(self) -> str:
        return f"cuda:{self.gpu.index} ({self.gpu.name}), TensorRT {self.key.trt_version} {self.precision}"

    def infer(self, pixel_values: np.ndarray, prompt_ids: np.ndarray | None = None) -> np.ndarray:
        pixels = np.ascontiguousarray(pixel_values, np.float32)
        self.profile.check(pixels.shape)
        self.context.set_input_shape(INPUT_PIXELS, tuple(pixels.shape))
        staging = self._host_in[: pixels.nbytes]
        staging[:] = pixels.reshape(-1).view(np.uint8)
        self.cuda.to_device(self._in_ptr, staging)
        if self.spec.needs_prompt:
            self._upload_prompt(prompt_ids, pixels.shape[0])
        if not self.context.execute_async_v3(self.cuda.stream):
            raise InvalidModelError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        shape = tuple(self.context.get_tensor_shape(OUTPUT_DEPTH))
        result = self._host_out[: int(np.prod(shape)) * 4]
        self.cuda.to_host(result, self._out_ptr)
        self.cuda.synchronize()
        return result.view(np.float32).reshape(shape).copy()

    def _upload_prompt(self, prompt_ids: np.ndarray | None, batch: int) -> None:
        if prompt_ids is None:
            raise ValueError(f"{self.spec.name} needs prompt_ids [B, {self.spec.prompt_length}]")
        ids = np.ascontiguousarray(prompt_ids, np.int64)
        if ids.shape != (batch, self.spec.prompt_length):
            raise ValueError(
                f"prompt_ids must be [{batch}, {self.spec.prompt_length}], got {list(ids.shape)}"
            )
        self.context.set_input_shape(INPUT_PROMPT, ids.shape)
        staging = self._host_prompt[: ids.nbytes]
        staging[:] = ids.reshape(-1).view(np.uint8)
        self.cuda.to_device(self._prompt_ptr, staging)

    def predict_frame(self, rgb: np.ndarray, short_side: int):
        """uint8 frame uploaded once (pinned), resized + normalised on the GPU straight into the
        input binding, output resized on the GPU, one download and one sync (torch CUDA only)."""
        if self.cuda.torch is None or self.spec.needs_prompt:  # prompts are written on the host
            return None
        from .device_processing import TorchProcessing

        torch = self.cuda.torch
        proc = getattr(self, "_processing", None)
        if proc is None or proc.short_side != short_side:
            proc = self._processing = TorchProcessing(self.spec, short_side, self.cuda.device)
        height, width = rgb.shape[:2]
        net_h, net_w = proc.input_size(height, width)
        stream = self.cuda.torch_stream
        with torch.cuda.stream(stream), torch.no_grad():
            pixels, raw = self.device_tensors((1, net_h, net_w))
            proc.preprocess(proc.upload(rgb), out=pixels)
            self.run_bound((1, net_h, net_w), self.cuda.stream)
            prediction = proc.postprocess(raw, height, width)
            host = proc.download(prediction)

        def points(mapping, intrinsics, stride, max_range):  # same stream, before the next frame
            with torch.cuda.stream(stream), torch.no_grad():
                return proc.points(prediction, mapping, intrinsics, stride, max_range)

        return DevicePrediction(host, (net_h, net_w), points)

    def device_tensors(self, shape: tuple[int, int, int]):
        """(input, output) torch views of the engine's bindings for a (B, H, W) input, so that GPU
        pre-processing writes straight into the engine input (torch CUDA only)."""
        if self.cuda.torch is None:
            raise BackendUnavailableError("GPU pre-processing needs torch with CUDA")
        torch = self.cuda.torch
        batch, height, width = shape
        self.profile.check((batch, 3, height, width))
        pixels = (
            self._in_buf[: batch * 3 * height * width * 4].view(torch.float32).view(batch, 3, height, width)
        )
        depth = self._out_buf[: batch * height * width * 4].view(torch.float32).view(batch, height, width)
        return pixels, depth

    def run_bound(self, shape: tuple[int, int, int], stream: int) -> None:
        """Execute on data already in the input binding (see `device_tensors`), on `stream`."""
        batch, height, width = shape
        self.context.set_input_shape(INPUT_PIXELS, (batch, 3, height, width))
        if not self.context.execute_async_v3(stream):
            raise InvalidModelError("TensorRT execute_async_v3 failed (see the TensorRT log)")

    def close(self) -> None:
        self.context = None
        self.engine = None
        self.cuda.close()
