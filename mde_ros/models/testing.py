"""Tiny random-weight models of the real architectures, for tests, benchmarks and the CI demo.

They are clearly not depth models: their names start with `random-` and their output is noise.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .registry import get_spec
from .spec import ModelSpec


def tiny_depth_anything_spec(
    convention: str = "disparity", name: str | None = None, initializer_range: float | None = None
) -> ModelSpec:
    """A Depth Anything V2 layout shrunk to ~0.2 M parameters (same graph, fewer channels).

    With the default initialisation the output is ~1e-8; `initializer_range` ~0.15 gives outputs
    of order 1, which numeric-precision tests (fp16, int8) need.
    """
    base = get_spec(
        "depth-anything-v2-small" if convention == "disparity" else "depth-anything-v2-metric-indoor-small"
    )
    config = copy.deepcopy(base.config)
    config["backbone_config"].update(
        hidden_size=48, num_hidden_layers=4, num_attention_heads=2, out_indices=[1, 2, 3, 4]
    )
    config.update(
        reassemble_hidden_size=48,
        neck_hidden_sizes=[8, 16, 24, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    if initializer_range is not None:
        config["initializer_range"] = initializer_range
        config["backbone_config"]["initializer_range"] = initializer_range
    return ModelSpec(
        name=name or f"random-tiny-depth-anything-{convention}",
        architecture="depth_anything",
        convention=convention,
        max_depth=base.max_depth,
        config=config,
        default_input_size=base.default_input_size,
        description="random weights, for tests only",
    )


def export_tiny_depth_anything(path: str | Path, convention: str = "disparity", seed: int = 0) -> Path:
    from .checkpoints import Checkpoint
    from .export import export_onnx
    from .torch_models import build_depth_anything

    spec = tiny_depth_anything_spec(convention)
    source = Checkpoint(kind="random", seed=seed).to_json()  # lets the torch backend rebuild it
    return export_onnx(build_depth_anything(spec, seed=seed), spec, path, source=source)


ORACLE_NAME = "oracle-red-channel-disparity"


def oracle_disparity_spec() -> ModelSpec:
    """Spec of the oracle test instrument (ImageNet normalisation, like the real models)."""
    return ModelSpec(
        name=ORACLE_NAME,
        architecture="oracle",  # no torch model: only ONNX backends can run it
        convention="disparity",
        default_input_size=252,
        description="test instrument: output = red channel; not a depth model",
    )


def export_oracle_disparity_onnx(path: str | Path, channels: int = 1) -> Path:
    """ONNX graph with `predicted_depth` = the input's red channel in 0..255 (known disparity).

    It de-normalises channel 0 of `pixel_values` ((x * std + mean) * 255), so a test puts the
    disparity it wants into the image's red channel and knows exactly what the "network" says.
    Built with onnx.helper (no torch); dynamic batch, height and width; checked with onnx.checker.
    `channels=2`: a valid ONNX file whose output is [B, 2, H, W] (red and green), which no
    postprocess reads: the test instrument for the node's internal-error path.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from .export import DEFAULT_OPSET
    from .spec import INPUT_PIXELS, OUTPUT_DEPTH, SPEC_METADATA_KEY

    spec = oracle_disparity_spec()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    constants = {
        "starts": np.array([0], np.int64),
        "ends": np.array([channels], np.int64),
        "axes": np.array([1], np.int64),
        "gain": np.array(spec.std[0] * 255.0, np.float32),
        "bias": np.array(spec.mean[0] * 255.0, np.float32),
    }
    nodes = [
        helper.make_node("Slice", [INPUT_PIXELS, "starts", "ends", "axes"], ["red"]),  # [B,C,H,W]
        helper.make_node("Squeeze", ["red", "axes"], ["red_2d"]),  # [B,H,W]
        helper.make_node("Mul", ["red_2d", "gain"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], [OUTPUT_DEPTH]),
    ]
    output_shape = ["batch", "height", "width"]
    if channels != 1:
        nodes[1] = helper.make_node("Identity", ["red"], ["red_2d"])
        output_shape = ["batch", channels, "height", "width"]
    graph = helper.make_graph(
        nodes,
        "oracle_red_channel",
        [helper.make_tensor_value_info(INPUT_PIXELS, TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info(OUTPUT_DEPTH, TensorProto.FLOAT, output_shape)],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", DEFAULT_OPSET)], producer_name="mde_ros"
    )
    model.ir_version = 8  # the IR of opset 17; newer onnx defaults to an IR ONNX Runtime may not read
    model.doc_string = spec.description
    entry = model.metadata_props.add()
    entry.key, entry.value = SPEC_METADATA_KEY, spec.to_json()
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def reduced_da3_spec(name: str, depth: int) -> ModelSpec:
    """A registry DA3 layout with every width exact but only `depth` transformer blocks.

    The four DPT taps become the last four blocks; an any-view layout keeps its camera token,
    QK-norm, RoPE and local/global alternation from block `depth - 4` on (taps on both kinds).
    """
    import dataclasses

    base = get_spec(name)
    config = copy.deepcopy(base.config)
    taps = list(range(depth - 4, depth))
    config.update(depth=depth, out_layers=taps)
    if config["alt_start"] != -1:
        config.update(alt_start=taps[0], qknorm_start=taps[0], rope_start=taps[0])
    return dataclasses.replace(
        base, name=f"random-{name}-depth{depth}", config=config, description="random weights, for tests only"
    )


def tiny_da3_spec(name: str = "da3-small") -> ModelSpec:
    """A DA3 registry layout shrunk to ~0.3 M parameters (same graph: camera token, QK-norm, RoPE,
    local/global blocks, DualDPT or DPT + sky), for fast pipeline tests. Not the official widths."""
    import dataclasses

    base = get_spec(name)
    config = copy.deepcopy(base.config)
    any_view = config["alt_start"] != -1
    config.update(embed_dim=48, depth=6, num_heads=2, out_layers=[2, 3, 4, 5], features=16)
    config.update(out_channels=[8, 16, 24, 32], head_dim_in=96 if any_view else 48, cam_dim=48)
    if any_view:
        config.update(alt_start=2, qknorm_start=2, rope_start=2)
    return dataclasses.replace(
        base, name=f"random-tiny-{name}", config=config, description="random weights, for tests only"
    )
