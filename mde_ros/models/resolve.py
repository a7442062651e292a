"""`model` parameter -> ONNX file: a registry name, an ONNX path, or a checkpoint to export."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelNotFoundError


def resolve_onnx(model: str, engine_dir: str | Path | None = None) -> Path:
    """The ONNX file to run for `model` (exported into `engine_dir` first when needed)."""
    path = Path(model).expanduser()
    if path.suffix == ".onnx":
        if not path.is_file():
            raise ModelNotFoundError(f"ONNX file not found: {path}")
        return path
    raise ModelNotFoundError(
        f"cannot resolve model {model!r}: give a .onnx file exported by `mde-ros export`"
    )
