"""Backend selection: `backend` parameter -> a ready Backend for one ONNX file."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import BackendUnavailableError
from .base import Backend

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")


def create_backend(kind: str, onnx_path: str | Path, *, threads: int = 0) -> Backend:
    """Create the backend named `kind` for `onnx_path` (see README: Backends)."""
    if kind not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    from .onnxruntime_backend import OnnxRuntimeBackend

    if kind in ("auto", "onnxruntime"):
        return OnnxRuntimeBackend(onnx_path, providers="cpu", threads=threads)
    raise BackendUnavailableError(f"backend {kind!r} is not available yet")
