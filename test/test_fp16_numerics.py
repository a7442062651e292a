"""fp16 numerics at export and conversion: attention scale folded into Q (exact, ORT parity),
weights range-checked before they are cast."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from mde_ros.models.export import export_onnx, smooth_pixels  # noqa: E402
from mde_ros.models.fp16 import FLOAT, FLOAT16, convert_to_fp16, fp16_range_risk  # noqa: E402
from mde_ros.models.testing import tiny_depth_anything_spec  # noqa: E402
from mde_ros.models.torch_models import build_depth_anything, depth_module  # noqa: E402

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def model_and_onnx(tmp_path_factory):
    spec = tiny_depth_anything_spec("metric", initializer_range=0.15)
    model = build_depth_anything(spec, seed=31)
    path = export_onnx(model, spec, tmp_path_factory.mktemp("fold") / "m.onnx")
    return model, path


def _producer(graph, name):
    return next(n for n in graph.node if name in n.output)


def test_attention_scale_is_folded_into_the_query_projection(model_and_onnx):
    model, path = model_and_onnx
    graph = onnx.load(str(path)).graph
    softmaxes = [n for n in graph.node if n.op_type == "Softmax"]
    assert len(softmaxes) == model.config.backbone_config.num_hidden_layers
    for softmax in softmaxes:  # MatMul -> Softmax: the pattern fused attention kernels match
        assert _producer(graph, softmax.input[0]).op_type == "MatMul"
    # the caller's model is untouched (the fold works on a copy) and still scales in attention
    attention = model.backbone.encoder.layer[0].attention
    assert attention.scaling == pytest.approx(attention.head_dim**-0.5)


def test_folded_export_matches_the_unfolded_torch_model(model_and_onnx):
    model, path = model_and_onnx
    session = ort.InferenceSession(str(path), providers=CPU)
    for height, width in ((70, 98), (56, 84)):
        pixels = smooth_pixels(np.random.default_rng(height), height, width)
        with torch.no_grad():
            expected = depth_module(model)(torch.from_numpy(pixels)).numpy()
        got = session.run(None, {"pixel_values": pixels})[0]
        assert np.abs(expected).mean() > 0.1
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_fp16_range_risk_counts_overflow_and_flush():
    values = np.array([0.0, 1.0, 7e4, -1e5, 1e-9, -2e-8, 1e-6], np.float32)
    assert fp16_range_risk(values) == (2, 2)  # 1e-6 survives as an fp16 subnormal
    assert fp16_range_risk(np.linspace(-2, 2, 100, dtype=np.float32)) == (0, 0)


def test_out_of_range_weights_stay_fp32_and_the_graph_still_runs(model_and_onnx):
    _, path = model_and_onnx
    proto = onnx.load(str(path))
    from onnx import numpy_helper

    # a MatMul weight with one value beyond fp16's range (a real failure mode of cast-everything)
    consumers = {i for n in proto.graph.node if n.op_type == "MatMul" for i in n.input}
    target = next(i for i in proto.graph.initializer if i.name in consumers and len(i.dims) == 2)
    values = numpy_helper.to_array(target).copy()
    values[0, 0] = 1e5
    target.CopyFrom(numpy_helper.from_array(values, target.name))
    converted = convert_to_fp16(proto)
    kept = next(i for i in converted.graph.initializer if i.name == target.name)
    assert kept.data_type == FLOAT
    others = [
        i.data_type for i in converted.graph.initializer if i.name in consumers and i.name != target.name
    ]
    assert FLOAT16 in others  # the rest is still converted
    types = {v.name: v.type.tensor_type.elem_type for v in converted.graph.value_info}
    reader = next(n for n in converted.graph.node if target.name in n.input)
    assert reader.op_type == "MatMul" and types[reader.output[0]] == FLOAT  # its consumer stays fp32
    pixels = smooth_pixels(np.random.default_rng(0), 42, 56)
    out = ort.InferenceSession(converted.SerializeToString(), providers=CPU).run(
        None, {"pixel_values": pixels}
    )[0]
    assert out.shape == (1, 42, 56)
