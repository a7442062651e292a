"""Pictures for people: evaluation panels with titles, colour bars and metrics; the training loss curve.

OpenCV drawing only (no matplotlib): the runtime already has OpenCV.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
HEADER, FOOTER, BAR_WIDTH = 30, 30, 76
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (128, 128, 128)
MAX_ERROR = 0.5  # AbsRel shown from 0 (black) to this (white)
METRIC_LABELS = {
    "abs_rel": "AbsRel",
    "sq_rel": "SqRel",
    "rmse": "RMSE",
    "log_rmse": "logRMSE",
    "d1": "d1",
    "d2": "d2",
    "d3": "d3",
}


def paint_depth(depth: np.ndarray, low: float, high: float) -> np.ndarray:
    """TURBO colours on a fixed [low, high] (near = warm), invalid black: matches `colour_bar`."""
    scale = 255.0 / max(high - low, 1e-9)
    gray = np.clip(np.nan_to_num((high - depth) * scale, nan=0.0, posinf=0.0, neginf=0.0), 0, 255)
    painted = cv2.applyColorMap(gray.astype(np.uint8), cv2.COLORMAP_TURBO)
    painted[~np.isfinite(depth)] = 0
    return painted


def paint_error(error: np.ndarray) -> np.ndarray:
    gray = (np.clip(np.nan_to_num(error, nan=0.0) / MAX_ERROR, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def colour_bar(height: int, low: float, high: float, depth: bool = True) -> np.ndarray:
    """A vertical bar (top = `low`) with 5 tick values, BAR_WIDTH pixels wide (unit: its title)."""
    values = np.linspace(low, high, height, dtype=np.float32)[:, None].repeat(18, 1)
    strip = paint_depth(values, low, high) if depth else paint_error(values)
    bar = np.full((height, BAR_WIDTH, 3), 255, np.uint8)
    bar[:, 4:22] = strip
    for fraction in np.linspace(0, 1, 5):
        y = round(float(fraction) * (height - 1))
        value = low + fraction * (high - low)
        cv2.line(bar, (22, y), (27, y), BLACK, 1)
        text_y = min(max(y + 4, 10), height - 3)
        cv2.putText(bar, f"{value:.3g}", (29, text_y), FONT, 0.36, BLACK, 1, cv2.LINE_AA)
    return bar


def _band(width: int, height: int, text: str, scale: float = 0.5) -> np.ndarray:
    band = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(band, text, (6, height - 10), FONT, scale, BLACK, 1, cv2.LINE_AA)
    return band


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    return np.concatenate([_band(panel.shape[1], HEADER, title), panel], 0)


def metrics_line(metrics: dict[str, float], unit: str) -> str:
    parts = []
    for key, label in METRIC_LABELS.items():
        if key in metrics:
            suffix = f" {unit}" if key == "rmse" and unit == "m" else ""
            parts.append(f"{label} {metrics[key]:.3f}{suffix}")
    return "   ".join(parts)


def eval_figure(
    rgb: np.ndarray,
    prediction: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray,
    metrics: dict[str, float],
    name: str,
    prediction_title: str,
    metric: bool = True,
) -> np.ndarray:
    """image | prediction (+ bar) | ground truth (+ bar, m) | AbsRel error (+ bar), titles, metrics."""
    low, high = np.percentile(gt[mask], [2, 98]) if mask.any() else (0.0, 1.0)
    low, high = float(low), float(max(high, low + 1e-6))
    height = rgb.shape[0]
    if metric:
        pred_low, pred_high, pred_unit = low, high, "metres"
    else:  # unit-less: its own range and a "relative" bar
        valid = prediction[np.isfinite(prediction)]
        pred_low, pred_high = np.percentile(valid, [2, 98]) if valid.size else (0.0, 1.0)
        pred_unit = "relative"
    error = np.zeros(gt.shape, np.float32)
    error[mask] = np.abs(prediction[mask] - gt[mask]) / gt[mask] if metric else np.nan
    panels = [
        _titled(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), f"image {name}"),
        _titled(paint_depth(prediction, pred_low, pred_high), prediction_title),
        _titled(colour_bar(height, float(pred_low), float(pred_high)), pred_unit),
        _titled(paint_depth(np.where(mask, gt, np.nan), low, high), "ground truth"),
        _titled(colour_bar(height, low, high), "metres"),
        _titled(paint_error(error), "AbsRel error |pred - gt| / gt"),
        _titled(colour_bar(height, 0.0, MAX_ERROR, depth=False), "AbsRel"),
    ]
    row = np.concatenate(panels, 1)
    footer = _band(row.shape[1], FOOTER, metrics_line(metrics, "m" if metric else ""))
    return np.concatenate([row, footer], 0)


def write_loss_curve(history: list[dict[str, float]], folder: Path | str) -> tuple[Path, Path]:
    """loss.csv (epoch, train, val) and loss.png (both curves against the epoch) in `folder`."""
    folder = Path(folder)
    csv_path, png_path = folder / "loss.csv", folder / "loss.png"
    keys = ["epoch", *sorted({k for row in history for k in row} - {"epoch"})]
    lines = [",".join(keys)]
    lines += [",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in keys) for row in history]
    csv_path.write_text("\n".join(lines) + "\n")
    cv2.imwrite(str(png_path), _curve_image(history, [k for k in keys if k != "epoch"]))
    return csv_path, png_path


def _curve_image(history: list[dict[str, float]], series: list[str], size=(640, 400)) -> np.ndarray:
    width, height = size
    left, right, top, bottom = 70, 20, 40, 50
    image = np.full((height, width, 3), 255, np.uint8)
    values = [row[k] for row in history for k in series if row.get(k) is not None]
    epochs = [row["epoch"] for row in history]
    cv2.putText(image, "training loss", (left, 25), FONT, 0.6, BLACK, 1, cv2.LINE_AA)
    if not values or not epochs:
        return image
    low, high = min(values), max(values)
    high = high if high > low else low + 1.0
    first, last = min(epochs), max(epochs)
    span = max(last - first, 1)

    def point(epoch: float, value: float) -> tuple[int, int]:
        x = left + (epoch - first) / span * (width - left - right)
        y = top + (high - value) / (high - low) * (height - top - bottom)
        return round(float(x)), round(float(y))

    cv2.rectangle(image, (left, top), (width - right, height - bottom), GREY, 1)
    for fraction in np.linspace(0, 1, 5):
        value = low + fraction * (high - low)
        y = point(first, value)[1]
        cv2.putText(image, f"{value:.3g}", (5, y + 4), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    for epoch in sorted(set(epochs))[:: max(1, len(set(epochs)) // 10)]:
        x = point(epoch, low)[0]
        cv2.putText(image, str(int(epoch)), (x - 5, height - bottom + 18), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    cv2.putText(image, "epoch", (width // 2 - 20, height - 10), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    colours = [(200, 80, 0), (0, 120, 230), (0, 160, 0)]
    for index, key in enumerate(series):
        pts = [point(row["epoch"], row[key]) for row in history if row.get(key) is not None]
        colour = colours[index % len(colours)]
        if len(pts) > 1:
            cv2.polylines(image, [np.array(pts, np.int32)], False, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(image, p, 3, colour, -1, cv2.LINE_AA)
        legend_x = width - right - 150
        cv2.putText(image, key, (legend_x, top + 20 + 18 * index), FONT, 0.45, colour, 1, cv2.LINE_AA)
    return image
