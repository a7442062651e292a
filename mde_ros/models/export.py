"""torch -> ONNX export following the mde_ros contract (dynamic batch, height and width).

The exported file carries its ModelSpec as metadata and is the single source of truth for every
backend (ONNX Runtime, TensorRT, and the torch backend's parity reference).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from .spec import INPUT_PIXELS, INPUT_PROMPT, OUTPUT_DEPTH, SPEC_METADATA_KEY, ModelSpec

# Where the weights came from (a `checkpoints.Checkpoint` as JSON): lets the torch backend rebuild
# the very same network from the ONNX file alone.
SOURCE_METADATA_KEY = "mde_ros.source"

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
# Non-square example so that no height/width coincidence gets baked into the traced graph.
EXAMPLE_HEIGHT, EXAMPLE_WIDTH = 14 * 7, 14 * 10


def export_onnx(
    model, spec: ModelSpec, path: str | Path, opset: int = DEFAULT_OPSET, source: str | None = None
) -> Path:
    """Trace `model` (a torch module for `spec`) to `path`; returns the path.

    `source` (a `checkpoints.Checkpoint` JSON) is stored as metadata for the torch backend.
    """
    import onnx
    import torch

    from .torch_models import depth_module

    if opset not in (17, 18):
        raise ValueError("opset must be 17 or 18")
    import copy

    from .attention_export import drop_unit_muls, fold_attention_scale

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model)  # the fold below rewrites weights; the caller's model stays as is
    fold_attention_scale(model)
    module = depth_module(model).eval()
    example = [torch.randn(1, 3, EXAMPLE_HEIGHT, EXAMPLE_WIDTH)]
    input_names = [INPUT_PIXELS]
    dynamic_axes = {
        INPUT_PIXELS: {0: "batch", 2: "height", 3: "width"},
        OUTPUT_DEPTH: {0: "batch", 1: "height", 2: "width"},
    }
    if spec.needs_prompt:
        example.append(torch.zeros(1, spec.prompt_length, dtype=torch.int64))
        input_names.append(INPUT_PROMPT)
        dynamic_axes[INPUT_PROMPT] = {0: "batch"}
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic are expected
        torch.onnx.export(
            module,
            tuple(example),
            str(tmp),
            input_names=input_names,
            output_names=[OUTPUT_DEPTH],
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,  # the TorchScript tracer keeps height/width symbolic; see README
            do_constant_folding=True,
        )
    graph = onnx.load(str(tmp))
    drop_unit_muls(graph.graph)
    entry = graph.metadata_props.add()
    entry.key, entry.value = SPEC_METADATA_KEY, spec.to_json()
    if source:
        entry = graph.metadata_props.add()
        entry.key, entry.value = SOURCE_METADATA_KEY, source
    graph.producer_name = "mde_ros"
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    tmp.unlink(missing_ok=True)
    log.info("exported %s to %s (opset %d)", spec.name, path, opset)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def quantize_int8(fp32_path: str | Path, int8_path: str | Path) -> Path:
    """Dynamic int8 quantization of the MatMul weights only (convolutions and norms stay fp32).

    MatMuls carry most of the ViT's compute; quantizing convolutions too costs more accuracy in
    the DPT head for little speed. The metadata (spec, source) is carried over.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8_path = Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantizer logs every tensor on the root logger
    try:
        quantize_dynamic(
            str(fp32_path), str(int8_path), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8
        )
    finally:
        root.setLevel(level)
    model = onnx.load(str(int8_path))
    present = {p.key for p in model.metadata_props}
    for key, value in read_metadata(fp32_path).items():
        if key not in present:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(int8_path))
    return int8_path


def compare_onnx(
    reference: str | Path, candidate: str | Path, shapes: list[tuple[int, int]], seed: int = 0
) -> dict[str, float]:
    """Relative L1 error and max abs error of `candidate` vs `reference` on ONNX Runtime CPU.

    The inputs are smooth synthetic images (low-frequency noise, normalised like real pixels):
    white noise would exaggerate the error of a quantized model.
    """
    import numpy as np
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    options = ort.SessionOptions()
    sessions = [
        ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for p in (reference, candidate)
    ]
    num = den = max_abs = 0.0
    for height, width in shapes:
        pixels = smooth_pixels(rng, height, width)
        ref, cand = (s.run([OUTPUT_DEPTH], {INPUT_PIXELS: pixels})[0] for s in sessions)
        num += float(np.abs(cand - ref).sum())
        den += float(np.abs(ref).sum())
        max_abs = max(max_abs, float(np.abs(cand - ref).max()))
    return {"rel_l1": num / max(den, 1e-12), "max_abs": max_abs}


def smooth_pixels(rng, height: int, width: int, batch: int = 1):
    """Normalised float32 [B,3,H,W] with image-like (low-frequency) content."""
    import cv2
    import numpy as np

    coarse = rng.uniform(0, 255, (batch, max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    images = np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_CUBIC) for c in coarse])
    mean = np.array([0.485, 0.456, 0.406], np.float32) * 255
    std = np.array([0.229, 0.224, 0.225], np.float32) * 255
    return np.ascontiguousarray(((images - mean) / std).transpose(0, 3, 1, 2), dtype=np.float32)
