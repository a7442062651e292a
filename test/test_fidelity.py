"""Reference fidelity: Depth Anything's published recipe vs mde_ros's full pipeline.

The reference is written from the published recipe (Depth Anything V2 `image2tensor` /
`infer_image`): float RGB in [0, 1], keep-aspect `lower_bound` resize to a multiple of 14 with
cv2.INTER_CUBIC, ImageNet normalisation, the torch model's own forward, then
`F.interpolate(..., mode="bilinear", align_corners=True)` back to the image size. mde_ros runs the
same random-weight model exported to ONNX through `DepthPipeline` on ONNX Runtime. Real images:
castel (Debian visp-images-data) and scikit-learn's bundled photographs. The printed figure is
max |mde_ros - reference| / max |reference| over each image; `preprocess: reference` must stay
within 1e-3, `fast` (the default) is measured and printed.
"""

from __future__ import annotations

import dataclasses
import math
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mde_ros.geometry.intrinsics import CameraIntrinsics
from mde_ros.inference.factory import create_backend
from mde_ros.models.export import export_onnx
from mde_ros.models.testing import tiny_da3_spec, tiny_depth_anything_spec
from mde_ros.models.torch_models import build_torch_model
from mde_ros.pipeline import DepthPipeline, Frame

TARGET = 1e-3
SHORT_SIDE = 252
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def _images() -> dict[str, np.ndarray]:
    from mde_ros.data.visp import castel_frames

    images = {"castel": castel_frames(indices=[0])[0].rgb}
    for path in sorted(Path(str(files("sklearn.datasets").joinpath("images"))).glob("*.jpg")):
        images[path.stem] = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return images


def _v1_spec():
    """The tiny V2 layout with V1's taps (the last four blocks) over six blocks."""
    spec = tiny_depth_anything_spec("disparity", name="random-tiny-v1", initializer_range=0.15)
    config = dict(spec.config, backbone_config=dict(spec.config["backbone_config"]))
    config["backbone_config"].update(num_hidden_layers=6, out_indices=[3, 4, 5, 6])
    return dataclasses.replace(spec, config=config)


FAMILIES = {
    "v1": _v1_spec,
    "v2": lambda: tiny_depth_anything_spec("disparity", name="random-tiny-v2", initializer_range=0.15),
    "v2-metric": lambda: tiny_depth_anything_spec("metric", name="random-tiny-v2m", initializer_range=0.15),
    "da3-small": lambda: tiny_da3_spec("da3-small"),
    "da3metric-large": lambda: tiny_da3_spec("da3metric-large"),
}


def reference_depth(model, rgb: np.ndarray, target: int = SHORT_SIDE) -> np.ndarray:
    """Depth Anything's published inference recipe around the torch model's own forward."""
    image = rgb.astype(np.float32) / 255.0
    height, width = image.shape[:2]
    scale = max(target / height, target / width)

    def constrain(value: float) -> int:
        snapped = int(np.round(value / 14) * 14)
        return snapped if snapped >= target else math.ceil(value / 14) * 14

    size = (constrain(width * scale), constrain(height * scale))
    image = (cv2.resize(image, size, interpolation=cv2.INTER_CUBIC) - MEAN) / STD
    pixels = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        out = model(pixels)
        out = out.predicted_depth if hasattr(out, "predicted_depth") else out
        out = F.interpolate(out[:, None], (height, width), mode="bilinear", align_corners=True)
    return out[0, 0].numpy()


@pytest.fixture(scope="module")
def images():
    return _images()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_pipeline_matches_the_reference_recipe(family, images, tmp_path, capsys):
    spec = FAMILIES[family]()
    model = build_torch_model(spec, seed=0)
    path = export_onnx(model, spec, tmp_path / f"{family}.onnx")
    results = {}
    for mode in ("reference", "fast"):
        pipeline = DepthPipeline(create_backend("onnxruntime", path), SHORT_SIDE, preprocess=mode)
        worst = 0.0
        for rgb in images.values():
            height, width = rgb.shape[:2]
            camera = CameraIntrinsics(500.0, 500.0, width / 2, height / 2, width, height)
            ours = pipeline.process(Frame(rgb, camera)).prediction  # network output at image size
            expected = reference_depth(model, rgb)
            finite = np.isfinite(expected)  # DA3 metric marks sky +Inf: compared where both are depths
            error = np.abs(ours[finite] - expected[finite]).max() / np.abs(expected[finite]).max()
            worst = max(worst, float(error))
        pipeline.close()
        results[mode] = worst
    with capsys.disabled():
        print(
            f"\n[fidelity] {family:16s} max relative difference vs reference recipe on {len(images)} real "
            f"images: preprocess=reference {results['reference']:.2e}, fast {results['fast']:.2e}"
        )
    assert results["reference"] <= TARGET


@pytest.mark.parametrize("family", ["v2-metric", "da3metric-large"])
def test_same_scene_at_two_resolutions_gives_the_same_metres(family, images, tmp_path):
    """One scene, CameraInfo fx 525 at 640x480 and fx 1050 at 1280x960: the network sees the same
    image and the same focal after the resize, so the metres agree; DA3's focal/300 factor must use
    that network focal, not the CameraInfo fx (which would double the depth)."""
    spec = FAMILIES[family]()
    path = export_onnx(build_torch_model(spec, seed=0), spec, tmp_path / "m.onnx")
    pipeline = DepthPipeline(create_backend("onnxruntime", path), SHORT_SIDE, preprocess="reference")
    small = images["castel"]
    big = cv2.resize(small, (1280, 960), interpolation=cv2.INTER_CUBIC)
    depths = []
    for rgb, fx in ((small, 525.0), (big, 1050.0)):
        height, width = rgb.shape[:2]
        camera = CameraIntrinsics(fx, fx, (width - 1) / 2, (height - 1) / 2, width, height)
        result = pipeline.process(Frame(rgb, camera))
        assert result.metric and result.network_size == (252, 336)
        depths.append(result.depth)
    pipeline.close()
    medians = [float(np.median(d[np.isfinite(d)])) for d in depths]
    assert medians[0] > 0
    assert abs(medians[1] / medians[0] - 1) < 0.03, medians
