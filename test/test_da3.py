"""Depth Anything 3: official checkpoint layouts, loading, export to the ONNX contract, sky, metres.

The full official layouts (every key and shape) are checked on torch's meta device (no memory).
Parity runs on DA3-Small at full size (every official key, exported by `mde-ros export`) and on the
large mono/metric layout with every width exact but 4 of its 24 blocks (the issue allows reduced
depth for models too slow for CPU tests).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import save_file

from mde_ros.errors import InvalidModelError
from mde_ros.geometry.intrinsics import CameraIntrinsics
from mde_ros.inference.factory import create_backend
from mde_ros.models.checkpoints import load_checkpoint, spec_for_hf_folder
from mde_ros.models.da3 import build_da3, official_state_dict
from mde_ros.models.da3_layout import DA3_VARIANTS, da3_state_shapes
from mde_ros.models.export import export_onnx
from mde_ros.models.registry import get_spec
from mde_ros.models.testing import reduced_da3_spec
from mde_ros.pipeline import DepthPipeline, Frame


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, height, width)).astype(np.float32)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    finite = np.isfinite(b) & (b != 0)
    return float((np.abs(a[finite] - b[finite]) / np.abs(b[finite])).max())


@pytest.mark.parametrize("name", [v.name for v in DA3_VARIANTS])
def test_full_layout_is_the_official_checkpoint_layout(name):
    spec = get_spec(name)
    with torch.device("meta"):
        model = build_da3(spec)
    got = {k: tuple(v.shape) for k, v in official_state_dict(model).items()}
    expected = {f"model.{k}": v for k, v in da3_state_shapes(spec.config).items()}
    assert sorted(got) == sorted(expected)
    assert got == expected


def test_registry_entries_say_convention_licence_and_files():
    metric = get_spec("da3metric-large")
    assert metric.convention == "metric_canonical" and metric.canonical_focal == 300.0 and metric.sky
    assert get_spec("da3mono-large").convention == "disparity" and get_spec("da3mono-large").sky
    assert not get_spec("da3-small").sky and get_spec("da3-small").architecture == "da3"


@pytest.mark.slow
def test_da3_small_official_file_resolves_exports_and_matches_torch(tmp_path, monkeypatch):
    """A `model.safetensors` in the official layout -> `model: da3-small` -> ONNX = torch (<= 1e-4)."""
    from mde_ros.models.resolve import resolve_onnx

    spec = get_spec("da3-small")
    model = build_da3(spec, seed=3)
    folder = tmp_path / "weights" / "da3-small"
    folder.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in official_state_dict(model).items()}
    save_file(state, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_name": "da3-small"}))
    assert spec_for_hf_folder(folder).name == "da3-small"
    monkeypatch.setenv("MDE_ROS_WEIGHTS", str(tmp_path / "weights"))
    onnx_path = resolve_onnx("da3-small", tmp_path / "engines")
    session = _session(onnx_path)
    for height, width in ((98, 140), (126, 84)):  # neither is the export's example size
        pixels = _pixels(height, width)
        (out,) = session.run(None, {"pixel_values": pixels})
        with torch.no_grad():
            expected = model(torch.from_numpy(pixels)).numpy()
        assert out.shape == (1, height, width)
        assert _relative(out, expected) <= 1e-4
        assert np.ptp(expected) > 1e-3 * np.abs(expected).mean()  # not a constant map


def test_official_file_with_a_missing_key_is_refused(tmp_path):
    spec = reduced_da3_spec("da3-small", 4)
    state = official_state_dict(build_da3(spec, seed=0))
    state.pop("model.backbone.pretrained.camera_token")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    with pytest.raises(InvalidModelError, match="camera_token"):
        load_checkpoint(tmp_path / "model.safetensors", spec)


def _with_half_sky(model, pixels: np.ndarray) -> None:
    """Shift the sky head's bias so that about half the pixels of `pixels` are sky (>= 0.3)."""
    final = model.head.scratch.sky_output_conv2[-1]
    captured = {}
    hook = final.register_forward_hook(lambda _m, _i, out: captured.setdefault("logits", out))
    with torch.no_grad():
        model(torch.from_numpy(pixels))
        hook.remove()
        final.bias += 0.3 - captured["logits"].median()


@pytest.fixture(scope="module")
def large_metric(tmp_path_factory):
    """DA3METRIC-LARGE widths, 4 blocks, random weights with a sky area; (spec, torch model, ONNX)."""
    spec = reduced_da3_spec("da3metric-large", 4)
    model = build_da3(spec, seed=1)
    _with_half_sky(model, _pixels(112, 154))
    path = export_onnx(model, spec, tmp_path_factory.mktemp("da3") / "metric.onnx")
    return spec, model, path


@pytest.mark.slow
def test_large_metric_layout_parity_and_sky_is_inf(large_metric):
    _, model, path = large_metric
    pixels = _pixels(112, 154)
    (out,) = _session(path).run(None, {"pixel_values": pixels})
    with torch.no_grad():
        expected = model(torch.from_numpy(pixels)).numpy()
        _, sky = model.depth_and_sky(torch.from_numpy(pixels))
    sky_value = sky.numpy()
    clear = np.abs(sky_value - 0.3) > 1e-3  # float differences may flip pixels right at the threshold
    sky = sky_value >= 0.3
    assert 0.2 < sky.mean() < 0.8 and clear.mean() > 0.5
    assert np.isinf(out[sky & clear]).all() and np.isinf(expected[sky]).all()
    assert np.isfinite(out[~sky & clear]).all()
    assert _relative(np.where(clear, out, 1.0), np.where(clear, expected, 1.0)) <= 1e-4


@pytest.mark.slow
def test_pipeline_publishes_sky_as_inf_and_metres_from_network_focal(large_metric):
    _, _, path = large_metric
    pipeline = DepthPipeline(create_backend("onnxruntime", path), input_size=112)
    image = (np.random.default_rng(5).random((120, 165, 3)) * 255).astype(np.uint8)
    k = CameraIntrinsics(200.0, 200.0, 82.0, 60.0, 165, 120)
    result = pipeline.process(Frame(image, k))
    pipeline.close()
    assert result.metric
    sky = np.isinf(result.depth)
    assert 0.1 < sky.mean() < 0.9 and not np.isnan(result.depth[~sky]).any()
    # metres = network output x f_network / 300, with f_network the focal after the resize
    net_h, net_w = result.network_size
    f_net = 0.5 * (200.0 * net_w / 165 + 200.0 * net_h / 120)
    finite = ~sky
    np.testing.assert_allclose(result.depth[finite], result.prediction[finite] * f_net / 300.0, rtol=1e-5)


@pytest.mark.slow
def test_export_command_writes_da3_random_weights(tmp_path):
    """`mde-ros export --random-weights --model da3-small` runs (full official layout)."""
    out = tmp_path / "da3.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "mde_ros.cli", "export", "--model", "da3-small", "--random-weights",
         "--output", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (depth,) = _session(out).run(None, {"pixel_values": _pixels(70, 98)})
    with torch.no_grad():
        expected = build_da3(get_spec("da3-small"), seed=0)(torch.from_numpy(_pixels(70, 98))).numpy()
    assert _relative(depth, expected) <= 1e-4


def test_relative_model_outputs_inverse_depth_and_zero_for_sky():
    spec = reduced_da3_spec("da3mono-large", 4)
    model = build_da3(spec, seed=2)
    pixels = _pixels(84, 112)
    _with_half_sky(model, pixels)
    with torch.no_grad():
        out = model(torch.from_numpy(pixels)).numpy()
        depth, sky = model.depth_and_sky(torch.from_numpy(pixels))
    sky = sky.numpy() >= 0.3
    assert sky.any() and (~sky).any()
    assert (out[sky] == 0).all()
    np.testing.assert_allclose(out[~sky], 1.0 / depth.numpy()[~sky], rtol=1e-6)


@pytest.mark.parametrize("name", ["da3-small", "da3metric-large"])
def test_torch_backend_runs_the_da3_onnx_like_onnxruntime(name, tmp_path):
    from mde_ros.models.checkpoints import Checkpoint
    from mde_ros.models.testing import tiny_da3_spec

    spec = tiny_da3_spec(name)
    source = Checkpoint(kind="random", seed=4).to_json()
    path = export_onnx(build_da3(spec, seed=4), spec, tmp_path / "tiny.onnx", source=source)
    pixels = _pixels(70, 112)
    outputs = []
    for backend_name in ("onnxruntime", "torch"):
        kwargs = {"precision": "fp32", "device": "cpu"} if backend_name == "torch" else {}
        backend = create_backend(backend_name, path, **kwargs)
        outputs.append(np.asarray(backend.infer(pixels, None)))
        backend.close()
    assert _relative(outputs[1], outputs[0]) <= 1e-4
