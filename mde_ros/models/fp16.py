"""fp32 ONNX -> mixed fp16 ONNX for strongly typed TensorRT (11.x has no BuilderFlag.FP16).

Rules (why):
  * inputs and outputs stay float32, so every backend keeps the same contract;
  * LayerNormalization and Softmax are fp16 in the graph: TensorRT's normalization layer (opset 17
    LayerNormalization) computes in fp32 whatever its I/O type, and fused attention needs the
    MatMul -> Softmax -> MatMul chain without Casts (with the attention scale folded into Q at
    export, `models.attention_export`). Pinning them to fp32 cost 112 Casts on the default model for
    no accuracy: relative L1 vs fp32 1.7-2.6e-4 pinned, 1.8-1.9e-4 not (ONNX Runtime, 252x336);
  * only "data" tensors become fp16: a float tensor is data when it depends on a float graph input
    through ops other than Shape/Size. Float arithmetic on shapes (pos-embedding interpolation
    scales, resize sizes) stays float32, where fp16 would round sizes;
  * only ops in `FP16_OPS` run in fp16; everything else keeps float32 and gets Casts around it;
  * a weight tensor with values beyond fp16's range, or with more than 0.1 % of its non-zero values
    flushed to zero, stays float32 and so do the ops reading it (range checked, not cast blindly).
The result runs in ONNX Runtime too, which is how it is tested without TensorRT.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FLOAT, FLOAT16 = 1, 10
FP16_MAX = 65504.0
FP16_FLUSH = 2.0**-25  # below half the smallest fp16 subnormal (2^-24), a value rounds to 0
# A weight tensor with more of its non-zero values flushed to zero than this stays fp32.
MAX_FLUSHED_FRACTION = 1e-3
# Bump when the conversion rules change: cached converted ONNX files carry it in their name.
CONVERTER_VERSION = 4
FP16_OPS = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "MatMul", "Gemm", "Conv", "ConvTranspose", "Relu", "Sigmoid",
        "Erf", "Tanh", "Sqrt", "Transpose", "Reshape", "Concat", "Slice", "Gather", "Squeeze",
        "Unsqueeze", "Split", "Resize", "Identity", "Expand", "Where", "Flatten", "Cast", "Neg",
        "Abs", "Max", "Min", "Clip", "Tile", "Pad", "ReduceMean", "LayerNormalization", "Softmax",
    }
)  # fmt: skip
KEEP_FP32_OPS: frozenset[str] = frozenset()  # ops forced to fp32 whatever FP16_OPS says
# Float inputs that are parameters, not data (Resize roi/scales, Clip bounds are cast with the data).
_PARAM_INPUTS = {"Resize": {1, 2}}


def convert_to_fp16(model):
    """Return a converted copy of an `onnx.ModelProto` (see module docstring)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    types = _tensor_types(graph)
    data = _data_tensors(graph, types)
    # One list of node wrappers for the whole pass: protobuf may hand out a new wrapper object per
    # access, so identities are only stable on these.
    nodes = list(graph.node)
    risky = _out_of_range_weights(graph, types)  # their consumers stay fp32: range checked, not cast
    fp16_nodes = {
        id(n)
        for n in nodes
        if n.op_type in FP16_OPS
        and n.op_type not in KEEP_FP32_OPS
        and any(i in data for i in n.input)
        and not any(i in risky for i in n.input)
        and (n.op_type != "Cast" or _cast_to(n) == FLOAT)
    }
    consumers: dict[str, list] = {}
    for node in nodes:
        for pos, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, pos))

    def wants_fp16(node, pos: int) -> bool:
        return id(node) in fp16_nodes and pos not in _PARAM_INPUTS.get(node.op_type, ())

    # 1. Constants/initializers used only as fp16 operands: convert in place (no runtime Cast).
    initializers = {i.name: i for i in graph.initializer}
    const_nodes = {n.output[0]: n for n in nodes if n.op_type == "Constant"}
    home: dict[str, int] = {}  # float tensor -> dtype it is produced in after conversion
    flushed_total = 0
    for name in list(initializers) + list(const_nodes):
        uses = consumers.get(name, [])
        if types.get(name) == FLOAT and uses and all(wants_fp16(n, p) for n, p in uses):
            tensor = initializers.get(name) or helper.get_attribute_value(const_nodes[name].attribute[0])
            values = numpy_helper.to_array(tensor)
            flushed_total += fp16_range_risk(values)[1]
            tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float16), name))
            home[name] = FLOAT16
    log.info(
        "fp16 conversion: %d weight tensors out of fp16 range kept fp32 with their consumers; "
        "%d weights flushed to zero",
        len(risky),
        flushed_total,
    )
    # 2. fp16 nodes produce fp16; Cast-to-float nodes on data are retargeted to fp16.
    for node in nodes:
        if id(node) in fp16_nodes:
            if node.op_type == "Cast":
                for attr in node.attribute:
                    if attr.name == "to":
                        attr.i = FLOAT16
            for out in node.output:
                if types.get(out) == FLOAT:
                    home[out] = FLOAT16
    # 3. Insert Casts wherever a consumer wants the other precision (shared per tensor and dtype).
    new_nodes, casts = [], {}

    def cast_of(name: str, to: int) -> str:
        if (name, to) not in casts:
            cast_name = f"{name}__to_{'fp16' if to == FLOAT16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [cast_name], to=to, name=f"{cast_name}_cast"))
            casts[(name, to)] = cast_name
        return casts[(name, to)]

    for node in nodes:
        for pos, name in enumerate(node.input):
            if name and types.get(name) == FLOAT:
                want = FLOAT16 if wants_fp16(node, pos) else FLOAT
                if home.get(name, FLOAT) != want:
                    node.input[pos] = cast_of(name, want)  # the Cast lands just before `node`
        new_nodes.append(node)
    # 4. Graph outputs stay float32.
    for output in graph.output:
        if home.get(output.name) == FLOAT16:
            internal = f"{output.name}__fp16"
            for node in new_nodes:
                for i, name in enumerate(node.output):
                    if name == output.name:
                        node.output[i] = internal
                for i, name in enumerate(node.input):
                    if name == output.name:
                        node.input[i] = internal
            new_nodes.append(
                helper.make_node("Cast", [internal], [output.name], to=FLOAT, name="output_cast")
            )
    rebuilt = []
    for node in new_nodes:  # copies: the originals live in the container cleared below
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        rebuilt.append(copy)
    del graph.node[:]
    graph.node.extend(rebuilt)
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def _out_of_range_weights(graph, types: dict[str, int]) -> set[str]:
    """Float weights (initializers, Constants) that fp16 cannot hold: any value beyond its range,
    or more than MAX_FLUSHED_FRACTION of the non-zero values flushed to zero."""
    from onnx import helper, numpy_helper

    tensors = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == 4:
            tensors[node.output[0]] = helper.get_attribute_value(node.attribute[0])
    risky = set()
    for name, tensor in tensors.items():
        if types.get(name) != FLOAT:
            continue
        values = numpy_helper.to_array(tensor)
        overflow, flushed = fp16_range_risk(values)
        if overflow or flushed > MAX_FLUSHED_FRACTION * max(1, np.count_nonzero(values)):
            risky.add(name)
    return risky


def fp16_range_risk(values) -> tuple[int, int]:
    """(values beyond fp16's range, non-zero values that become 0 in fp16) of a float array."""
    magnitude = np.abs(np.asarray(values, np.float32))
    overflow = int((magnitude > FP16_MAX).sum())
    flushed = int(((magnitude > 0) & (magnitude < FP16_FLUSH)).sum())
    return overflow, flushed


def _cast_to(node) -> int:
    return next((a.i for a in node.attribute if a.name == "to"), 0)


def _tensor_types(graph) -> dict[str, int]:
    types = {}
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == 4:  # TENSOR
            types[node.output[0]] = node.attribute[0].t.data_type
    return types


def _data_tensors(graph, types: dict[str, int]) -> set[str]:
    """Tensors computed from a float graph input without passing through Shape/Size."""
    data = {i.name for i in graph.input if types.get(i.name) == FLOAT}
    for node in graph.node:  # nodes are topologically sorted in a valid ONNX graph
        if node.op_type in ("Shape", "Size"):
            continue
        if any(i in data for i in node.input):
            data.update(o for o in node.output if types.get(o) in (FLOAT, FLOAT16))
    return data


def convert_file(src: str | Path, dst: str | Path) -> Path:
    """Convert an ONNX file; metadata (spec, source) is kept. Written atomically."""
    import onnx

    from ..inference.engine_cache import atomic_write

    model = convert_to_fp16(onnx.load(str(src)))
    atomic_write(Path(dst), model.SerializeToString())
    return Path(dst)


def ensure_converted(src: str | Path, cache_dir: str | Path) -> Path:
    """The fp16 conversion of `src`, cached in `cache_dir` under its content hash and the converter
    version: never written next to the source (read-only folders), no mtime check, and two
    processes converting at once each rename a complete file into place."""
    from ..inference.engine_cache import converted_onnx_path
    from .onnx_contract import file_sha256

    src = Path(src)
    target = converted_onnx_path(Path(cache_dir), src.stem, file_sha256(src), CONVERTER_VERSION)
    if not target.is_file():
        convert_file(src, target)
    return target
