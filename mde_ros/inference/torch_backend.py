"""torch backend: the same network in PyTorch, on CUDA (fp16 `.half()` weights, SDPA, CUDA graphs) or CPU.

Design: the ONNX file stays the single source of truth. `mde-ros export` stores, next to the spec,
a pointer to the weights it was exported from (metadata `mde_ros.source`: the checkpoint path and
its sha256, or the seed of a random-weight test model). This backend rebuilds the torch module from
the spec + that checkpoint, refusing a checkpoint whose hash changed since the export. Converting
ONNX initializers back to torch would be fragile (constant folding fuses and transposes weights).
It needs torch and transformers at run time, unlike the ONNX Runtime and TensorRT backends.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, ModelNotFoundError
from ..models.onnx_contract import read_spec
from .base import Backend, DevicePrediction

log = logging.getLogger(__name__)


def load_source_model(onnx_path: str | Path, checkpoint: str | Path | None = None):
    """The torch model an ONNX file was exported from (spec + `mde_ros.source` metadata)."""
    from ..models.checkpoints import Checkpoint, load_checkpoint
    from ..models.export import SOURCE_METADATA_KEY, read_metadata
    from ..models.torch_models import build_torch_model

    spec = read_spec(onnx_path)
    if checkpoint is not None:
        model, _, _ = load_checkpoint(checkpoint, spec)
        return model, spec
    text = read_metadata(onnx_path).get(SOURCE_METADATA_KEY) or _default_source_for(onnx_path)
    if not text:
        raise BackendUnavailableError(
            f"{onnx_path} does not say which checkpoint it came from (no '{SOURCE_METADATA_KEY}' metadata): "
            "the torch backend needs the weights; re-export with `mde-ros export` or use onnxruntime/tensorrt"
        )
    source = Checkpoint.from_json(text)
    if source.kind == "random":
        return build_torch_model(spec, seed=source.seed), spec
    if source.kind == "default":
        _check_unchanged(source, onnx_path)
        from ..models.default_model import load_default_model

        return load_default_model(Path(source.path))[0], spec
    from ..models.llm_mde_onnx import SOURCE_KIND as LLM_MDE_KIND

    if source.kind == LLM_MDE_KIND:  # shipped LLM-MDE: its ONNX was composed without torch
        _check_unchanged(source, onnx_path)
        from ..models.llm_mde_onnx import load_llm_mde

        return load_llm_mde(source.path)[0], spec
    _check_unchanged(source, onnx_path)
    model, _, _ = load_checkpoint(source.path, spec)
    return model, spec


def _torch_device(torch, device: str):
    """`device` parameter -> torch.device; auto is cuda:0 when torch has CUDA, else cpu."""
    from .cuda_probe import TORCH_CUDA_HINT, parse_device

    try:
        dev = parse_device(device)
    except ValueError as exc:
        raise BackendUnavailableError(str(exc)) from None
    if dev.kind == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if dev.kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"torch has no CUDA device here (CPU-only build or no GPU; {TORCH_CUDA_HINT})"
        )
    if dev.index >= torch.cuda.device_count():
        raise BackendUnavailableError(
            f"{dev} does not exist: torch sees {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device("cuda", dev.index)


def use_sdpa(model) -> None:
    """Switch every transformers config in `model` to scaled_dot_product_attention (fused kernels
    on CUDA; the export keeps eager attention, whose ONNX pattern the exporters handle)."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = "sdpa"


def _check_unchanged(source, onnx_path) -> None:
    from ..models.checkpoints import checkpoint_sha256

    if not Path(source.path).exists():
        raise ModelNotFoundError(
            f"the torch backend needs the checkpoint {onnx_path} was exported from, {source.path}, "
            "which is gone; restore it or use the onnxruntime/tensorrt backend"
        )
    if checkpoint_sha256(source.path) != source.sha256:
        raise ModelNotFoundError(
            f"{source.path} changed since {onnx_path} was exported from it; re-export the ONNX "
            "(delete it and restart) so that every backend runs the same weights"
        )


def _default_source_for(onnx_path) -> str:
    """Default-model ONNX files exported before they carried a source pointer: their name holds
    the shipped weights' hash, so the pointer is known."""
    try:
        from ..models.default_model import default_onnx_name, default_source
    except ImportError:
        return ""
    try:
        if Path(onnx_path).name == default_onnx_name():
            return default_source().to_json()
    except Exception:  # weights missing: fall through to the usual error
        return ""
    return ""


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self,
        onnx_path: str | Path,
        device: str = "auto",
        precision: str = "fp16",
        cuda_graphs: bool = False,
        threads: int = 0,
        checkpoint: str | Path | None = None,
        device_processing: bool | None = None,
    ) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailableError("the torch backend needs PyTorch: pip install torch") from exc
        from ..models.torch_models import depth_module

        model, spec = load_source_model(onnx_path, checkpoint)
        super().__init__(spec)
        self._torch = torch
        self._device = _torch_device(torch, device)
        if threads > 0 and self._device.type == "cpu":
            torch.set_num_threads(threads)
        use_sdpa(model)
        # fp16 only on CUDA (CPU fp16 is slow and inaccurate): weights converted once with .half(),
        # not re-cast at every call as autocast does.
        self.precision = precision if self._device.type == "cuda" else "fp32"
        self._dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.cuda_graphs = cuda_graphs and self._device.type == "cuda"
        self.module = depth_module(model).to(self._device, self._dtype).eval()
        self._graphs: dict[tuple, tuple] = {}  # input shapes -> (graph, static inputs, static output)
        # Pre/post-processing in torch on the device: default on CUDA; on CPU only when asked
        # (tests), since numpy/OpenCV is as fast there.
        self.device_processing = (
            self._device.type == "cuda" if device_processing is None else device_processing
        )
        self._processing = None
        log.info(
            "torch backend on %s (%s, SDPA attention%s)",
            self.device,
            self.precision,
            ", CUDA graphs" if self.cuda_graphs else "",
        )

    @property
    def device(self) -> str:
        if self._device.type == "cuda":
            return f"{self._device} ({self._torch.cuda.get_device_name(self._device)})"
        return "cpu"

    @property
    def torch_device(self):
        return self._device

    def _forward(self, pixels, prompt_ids=None):
        """`prompt_ids` (int64 [B, L]) only for prompted models (LLM-MDE: the graph's 2nd input)."""
        inputs = (pixels.to(self._dtype),) if prompt_ids is None else (pixels.to(self._dtype), prompt_ids)
        with self._torch.inference_mode():
            return self.module(*inputs).float()

    def forward_tensor(self, pixels, prompt_ids=None):
        """Run on torch tensors already on the device (GPU pre-processing paths); returns a tensor."""
        if not self.cuda_graphs:
            return self._forward(pixels, prompt_ids)
        inputs = (pixels,) if prompt_ids is None else (pixels, prompt_ids)
        key = tuple(tuple(t.shape) for t in inputs)
        if key not in self._graphs:
            self._graphs[key] = self._capture(inputs)
        graph, static_in, static_out = self._graphs[key]
        for static, value in zip(static_in, inputs):
            static.copy_(value)
        graph.replay()
        return static_out

    def _capture(self, examples: tuple):
        """Capture one forward as a CUDA graph on the configured device (not the current one)."""
        torch = self._torch
        with torch.cuda.device(self._device):
            static_in = tuple(example.clone() for example in examples)
            stream = torch.cuda.Stream(device=self._device)
            stream.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(stream):  # warm-up outside the graph, as CUDA graphs require
                for _ in range(2):
                    self._forward(*static_in)
            torch.cuda.current_stream(self._device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                static_out = self._forward(*static_in)
        log.info(
            "captured a CUDA graph on %s for inputs %s", self._device, [tuple(t.shape) for t in examples]
        )
        return graph, static_in, static_out

    def predict_frame(self, rgb: np.ndarray, short_side: int):
        if not self.device_processing or self.spec.needs_prompt:
            return None
        from .device_processing import TorchProcessing

        if self._processing is None or self._processing.short_side != short_side:
            self._processing = TorchProcessing(self.spec, short_side, self._device)
        proc = self._processing
        # no_grad, not inference_mode: CUDA-graph input buffers must stay writable by `infer` too
        with self._torch.no_grad():
            pixels = proc.preprocess(proc.upload(rgb))
            prediction = proc.postprocess(self.forward_tensor(pixels), *rgb.shape[:2])
            host = proc.download(prediction)

        def points(mapping, intrinsics, stride, max_range):  # the cloud from the device's copy
            with self._torch.no_grad():
                return proc.points(prediction, mapping, intrinsics, stride, max_range)

        return DevicePrediction(host, tuple(pixels.shape[2:]), points)

    def infer(self, pixel_values: np.ndarray, prompt_ids: np.ndarray | None = None) -> np.ndarray:
        torch = self._torch
        pixels = torch.from_numpy(np.ascontiguousarray(pixel_values, np.float32)).to(self._device)
        prompt = None
        if self.spec.needs_prompt:
            if prompt_ids is None:
                raise ValueError(f"{self.spec.name} needs prompt_ids [B, {self.spec.prompt_length}]")
            prompt = torch.from_numpy(np.ascontiguousarray(prompt_ids, np.int64)).to(self._device)
        return self.forward_tensor(pixels, prompt).cpu().numpy()

    def close(self) -> None:
        self._graphs.clear()
        self.module = None
