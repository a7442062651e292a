"""Reading and checking ONNX files against the mde_ros contract (see `spec.py`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import InvalidModelError, ModelNotFoundError
from .spec import INPUT_PIXELS, INPUT_PROMPT, OUTPUT_DEPTH, SPEC_METADATA_KEY, ModelSpec


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_spec(onnx_path: str | Path) -> ModelSpec:
    """The ModelSpec stored in an ONNX file's metadata; a clear error if absent or corrupt."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise ModelNotFoundError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for truncated files
        raise InvalidModelError(
            f"{path} is not a readable ONNX file ({exc.__class__.__name__}: {exc}); "
            "re-export it with `mde-ros export`"
        ) from exc
    meta = {prop.key: prop.value for prop in model.metadata_props}
    if SPEC_METADATA_KEY not in meta:
        raise InvalidModelError(
            f"{path} has no '{SPEC_METADATA_KEY}' metadata: it was not written by `mde-ros export`. "
            "Export the checkpoint with `mde-ros export --model ...`"
        )
    spec = ModelSpec.from_json(meta[SPEC_METADATA_KEY])
    check_io_names(path, [i.name for i in model.graph.input], [o.name for o in model.graph.output], spec)
    return spec


def check_io_names(path: str | Path, inputs: list[str], outputs: list[str], spec: ModelSpec) -> None:
    """Refuse an ONNX whose input/output names differ from the contract."""
    expected_inputs = [INPUT_PIXELS] + ([INPUT_PROMPT] if spec.needs_prompt else [])
    if sorted(inputs) != sorted(expected_inputs) or outputs != [OUTPUT_DEPTH]:
        raise InvalidModelError(
            f"{path}: unexpected ONNX inputs {inputs} / outputs {outputs}; mde_ros expects inputs "
            f"{expected_inputs} and output ['{OUTPUT_DEPTH}']. Re-export with `mde-ros export`."
        )
