"""torch -> ONNX export following the mde_ros contract (dynamic batch, height and width).

The exported file carries its ModelSpec as metadata and is the single source of truth for every
backend (ONNX Runtime, TensorRT, and the torch backend's parity reference).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from .spec import INPUT_PIXELS, INPUT_PROMPT, OUTPUT_DEPTH, SPEC_METADATA_KEY, ModelSpec

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
# Non-square example so that no height/width coincidence gets baked into the traced graph.
EXAMPLE_HEIGHT, EXAMPLE_WIDTH = 14 * 7, 14 * 10


def export_onnx(model, spec: ModelSpec, path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Trace `model` (a torch module for `spec`) to `path`; returns the path."""
    import onnx
    import torch

    from .torch_models import depth_module

    if opset not in (17, 18):
        raise ValueError("opset must be 17 or 18")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    entry = graph.metadata_props.add()
    entry.key, entry.value = SPEC_METADATA_KEY, spec.to_json()
    graph.producer_name = "mde_ros"
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    tmp.unlink(missing_ok=True)
    log.info("exported %s to %s (opset %d)", spec.name, path, opset)
    return path
