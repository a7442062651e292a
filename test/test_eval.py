"""Evaluation metrics and `mde-ros eval` on real files."""

from __future__ import annotations

import numpy as np
import pytest

from mde_ros.training.metrics import baseline_predictions, depth_metrics, score


@pytest.fixture
def gt(rng):
    return rng.uniform(0.5, 5.0, (40, 60)).astype(np.float32)


def test_perfect_prediction_scores_perfectly(gt):
    metrics = depth_metrics(gt, gt, np.ones_like(gt, bool))
    assert metrics["abs_rel"] == 0 and metrics["rmse"] == 0 and metrics["d1"] == 1 and metrics["d3"] == 1


def test_known_values(gt):
    metrics = depth_metrics(gt * 1.1, gt, np.ones_like(gt, bool))
    assert metrics["abs_rel"] == pytest.approx(0.1, rel=1e-6)
    assert metrics["log_rmse"] == pytest.approx(np.log(1.1), rel=1e-6)
    assert metrics["d1"] == 1.0
    assert depth_metrics(gt * 1.3, gt, np.ones_like(gt, bool))["d1"] == 0.0


def test_relative_scores_are_scale_and_shift_invariant(gt):
    disparity = 1.0 / gt
    for scale, shift in ((1.0, 0.0), (37.0, 2.5), (0.01, -0.001)):
        metrics = score(scale * disparity + shift, gt, relative=True)
        assert metrics["abs_rel"] < 1e-6 and metrics["d1"] == 1.0
    # a metric prediction is not aligned: a scale error shows
    assert score(gt * 2, gt, relative=False)["abs_rel"] == pytest.approx(1.0)


def test_priors_are_worse_than_a_real_signal(gt):
    rows = np.linspace(10, 1, gt.shape[0], dtype=np.float32)[:, None].repeat(gt.shape[1], 1)
    const, grad = (score(p, rows, True)["abs_rel"] for p in baseline_predictions(*rows.shape).values())
    assert score(1 / rows, rows, True)["abs_rel"] < 1e-6 and min(grad, const) > 0.1


def _folder(tmp_path, n=3, size=(56, 70)):
    import cv2

    rng = np.random.default_rng(0)
    (tmp_path / "rgb").mkdir(parents=True)
    (tmp_path / "depth").mkdir()
    for i in range(n):
        cv2.imwrite(str(tmp_path / "rgb" / f"{i:03d}.png"), (rng.random(size + (3,)) * 255).astype(np.uint8))
        depth_mm = rng.uniform(500, 4000, size).astype(np.uint16)
        cv2.imwrite(str(tmp_path / "depth" / f"{i:03d}.png"), depth_mm)
    return tmp_path


def test_eval_command_prints_table_and_writes_side_by_side(tiny_onnx, tmp_path, capsys):
    import json

    from mde_ros.cli import main

    data = _folder(tmp_path / "data")
    out = tmp_path / "out"
    assert (
        main(["eval", "--model", tiny_onnx, "--data", str(data), "--out", str(out), "--input-size", "56"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "abs_rel" in printed and "prior: constant" in printed and "prior: gradient" in printed
    report = json.loads((out / "metrics.json").read_text())
    assert len(report["per_sample"]) == 3 and 0 <= report["mean"]["model"]["d1"] <= 1
    import cv2

    from mde_ros.training.figures import BAR_WIDTH, FOOTER, HEADER

    panel = cv2.imread(str(out / "000.png"))
    assert panel.shape == (HEADER + 56 + FOOTER, 70 * 4 + 3 * BAR_WIDTH, 3)


def test_eval_command_names_the_missing_depth_file(tiny_onnx, tmp_path, capsys):
    from mde_ros.cli import main

    data = _folder(tmp_path / "data")
    (data / "depth" / "001.png").unlink()
    assert main(["eval", "--model", tiny_onnx, "--data", str(data)]) == 2
    assert "001.png" in capsys.readouterr().err


def test_eval_command_fails_loudly_on_an_inverted_model(tiny_onnx, tmp_path, capsys):
    """Ground truth whose inverse depth is the tiny model's output upside down: eval refuses the model."""
    import cv2

    from mde_ros.cli import main
    from mde_ros.inference.factory import create_backend
    from mde_ros.pipeline import DepthPipeline, Frame

    data = _folder(tmp_path / "data")
    pipeline = DepthPipeline(create_backend("onnxruntime", tiny_onnx), input_size=56)
    try:
        for path in sorted((data / "rgb").glob("*.png")):
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            d = pipeline.process(Frame(rgb)).prediction.astype(np.float64)
            unit = (d - d.min()) / (d.max() - d.min())
            depth_mm = 1000.0 / (2.0 - 1.7 * unit)  # 1/z = 2 - 1.7 d: negative scale, 0.5 - 3.3 m
            cv2.imwrite(str(data / "depth" / path.name), np.rint(depth_mm).astype(np.uint16))
    finally:
        pipeline.close()
    assert main(["eval", "--model", tiny_onnx, "--data", str(data), "--input-size", "56"]) == 2
    err = capsys.readouterr().err
    assert "inverted" in err and "NEGATIVE scale on 3/3" in err


def test_motorcycle_is_the_metric_wide_range_evaluation_scene_and_never_training_data(capsys):
    """Middlebury Motorcycle from scikit-image's wheel: 2.2-4.8 m of real depth; train refuses it."""
    from mde_ros.cli import main
    from mde_ros.training.datasets import load_dataset

    (sample,) = load_dataset("middlebury:motorcycle")
    depth = sample.depth[np.isfinite(sample.depth)]
    assert sample.rgb.shape[:2] == sample.depth.shape and sample.rgb.dtype == np.uint8
    assert depth.size > 0.8 * sample.depth.size
    assert 2.0 < np.percentile(depth, 1) and np.percentile(depth, 99) < 5.0
    assert sample.intrinsics.fx == pytest.approx(3979.911 / 4)
    assert main(["train", "--data", "middlebury:motorcycle", "--out", "unused"]) == 2
    assert "never train on it" in capsys.readouterr().err
