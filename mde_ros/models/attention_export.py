"""Export-time attention rewrite for fp16 engines: 1/sqrt(d) folded into the query projection.

The transformers attention computes softmax((Q K^T) * 1/sqrt(d)); on the default model Q K^T
reaches 606-2,550 before the scale, all of it in fp16 in a strongly typed engine. Scaling the
query projection's weights and bias instead gives softmax((Q/sqrt(d)) K^T): the fp16 MatMul then
produces the (8x smaller) logits directly, and the graph has the MatMul -> Softmax -> MatMul shape
that TensorRT's fused multi-head attention matches (no Mul between the first MatMul and Softmax).
For head_dim 64 the scale is 1/8, a power of two, so the fold is exact in fp32.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def fold_attention_scale(model) -> int:
    """Fold each attention module's `scaling` into its `q_proj` (in place); returns how many."""
    import torch
    from torch import nn

    folded = 0
    for module in model.modules():
        query, scaling = getattr(module, "q_proj", None), getattr(module, "scaling", None)
        if not isinstance(query, nn.Linear) or not isinstance(scaling, float) or scaling == 1.0:
            continue
        with torch.no_grad():
            query.weight.mul_(scaling)
            if query.bias is not None:
                query.bias.mul_(scaling)
        module.scaling = 1.0
        folded += 1
    return folded


def drop_unit_muls(graph) -> int:
    """Remove `Mul(x, 1.0)` nodes (what a folded `* scaling` traces to) from an ONNX GraphProto."""
    from onnx import numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    rename: dict[str, str] = {}
    orphans: set[str] = set()  # the 1.0 constants of dropped Muls
    kept = []
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        node.input[:] = [rename.get(name, name) for name in node.input]
        if node.op_type == "Mul" and node.output[0] not in outputs:
            ones = [i for i, name in enumerate(node.input) if _is_one(constants.get(name))]
            if ones:
                rename[node.output[0]] = node.input[1 - ones[0]]
                orphans.add(node.input[ones[0]])
                continue
        kept.append(node)
    if rename:
        used = {name for node in kept for name in node.input}
        orphans -= used
        kept = [n for n in kept if not (n.op_type == "Constant" and n.output[0] in orphans)]
        del graph.node[:]
        graph.node.extend(kept)
        initializers = [i for i in graph.initializer if i.name not in orphans]
        del graph.initializer[:]
        graph.initializer.extend(initializers)
        log.info("dropped %d Mul-by-1 nodes (attention scale folded into the query projection)", len(rename))
    return len(rename)


def _is_one(value) -> bool:
    return value is not None and value.size == 1 and float(value.reshape(-1)[0]) == 1.0
