"""`model` parameter -> ONNX file: a registry name, an ONNX path, or a checkpoint to export.

Accepted forms:
  * `default`                          the embedded default model (LLM-MDE issue);
  * `llm-mde-small`                    the shipped LLM-MDE (composed without torch, like `default`);
  * `/path/model.onnx`                 used as is (must follow the contract);
  * `depth-anything-v2-small`          weights looked up in `$MDE_ROS_WEIGHTS/<name>/` (default
                                       `~/.cache/mde_ros/weights/<name>/`): the original `.pth` or a
                                       transformers folder (config.json + model.safetensors);
  * `/path/depth_anything_v2_vits.pth` an original file, architecture inferred from its name;
  * `depth-anything-v2-small:/path/x.pth` an original file under any name;
  * `/path/hf-folder`                  a transformers folder.
Checkpoints are exported once to `<engine_dir>/<name>-<checkpoint hash>.onnx` and reused.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .. import paths
from ..errors import ModelNotFoundError
from .llm_mde_onnx import NAME as LLM_MDE_NAME
from .registry import REGISTRY
from .spec import ModelSpec

log = logging.getLogger(__name__)

ENV_WEIGHTS = "MDE_ROS_WEIGHTS"


def weights_root() -> Path:
    return Path(os.environ.get(ENV_WEIGHTS) or "~/.cache/mde_ros/weights").expanduser()


def resolve_onnx(model: str, engine_dir: str | Path | None = None) -> Path:
    """The ONNX file to run for `model` (exported into `engine_dir` first when needed)."""
    model = str(model).strip()
    out_dir = Path(engine_dir).expanduser() if engine_dir else paths.engine_dir()
    if model == "default":
        return _default_onnx(out_dir)
    if model == LLM_MDE_NAME:
        from .llm_mde_onnx import ensure_llm_mde_onnx

        return Path(ensure_llm_mde_onnx(out_dir))
    name, _, rest = model.partition(":")
    if rest and name in REGISTRY:  # `registry-name:/path/to/checkpoint`
        return export_checkpoint(Path(rest).expanduser(), out_dir, REGISTRY[name])
    path = Path(model).expanduser()
    if path.suffix == ".onnx":
        if not path.is_file():
            raise ModelNotFoundError(f"ONNX file not found: {path}")
        return path
    if path.exists():
        return export_checkpoint(path, out_dir)
    if model in REGISTRY:
        return export_checkpoint(find_weights(REGISTRY[model]), out_dir, REGISTRY[model])
    raise ModelNotFoundError(
        f"cannot resolve model {model!r}: not a registry name (see `mde-ros models`), nor an existing "
        ".onnx file, .pth checkpoint or transformers folder"
    )


def find_weights(spec: ModelSpec) -> Path:
    """The local checkpoint of a registry entry under the weights folder, or a download hint."""
    from .checkpoints import HF_CONFIG, HF_WEIGHTS, hf_folder_repo

    folder = weights_root() / spec.name
    for file_name in spec.checkpoint_files:
        if (folder / file_name).is_file():
            return folder / file_name
    if (folder / HF_CONFIG).is_file() and any((folder / w).is_file() for w in HF_WEIGHTS):
        return folder
    if not spec.checkpoint_files:
        raise ModelNotFoundError(
            f"{spec.name} is a registry architecture without published weights: train it "
            f"(`mde-ros train`) and pass the exported .onnx, or a checkpoint as `{spec.name}:/path`"
        )
    hf_repo = hf_folder_repo(spec)
    alternative = (
        f" or {HF_CONFIG} + {HF_WEIGHTS[0]} from https://huggingface.co/{hf_repo}" if hf_repo else ""
    )
    raise ModelNotFoundError(
        f"no weights for {spec.name}: expected {folder / (spec.checkpoint_files or ('?',))[0]}"
        f"{alternative}. `mde-ros download {spec.name}` fetches it (user-invoked, never automatic). "
        f"Download once from {spec.weights_url} on a machine with internet and copy the "
        f"file there (or set {ENV_WEIGHTS}, or pass the path as `model`)."
    )


def export_checkpoint(path: Path, out_dir: Path, spec: ModelSpec | None = None) -> Path:
    """Export a checkpoint to `<out_dir>/<name>-<hash>.onnx`, reusing an earlier export."""
    from .checkpoints import checkpoint_sha256, spec_for_hf_folder, spec_for_pth

    if not path.exists():
        raise ModelNotFoundError(f"checkpoint not found: {path}")
    spec = spec or (spec_for_hf_folder(path) if path.is_dir() else spec_for_pth(path))
    digest = checkpoint_sha256(path)
    target = out_dir / f"{spec.name}-{digest[:16]}.onnx"
    if target.is_file():
        log.info("using the cached export %s", target)
        return target
    from .checkpoints import load_checkpoint
    from .export import export_onnx

    log.info("exporting %s (%s) to %s, once", spec.name, path, target)
    model, spec, source = load_checkpoint(path, spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{target.stem}.{os.getpid()}.partial.onnx"  # never leave half a file
    export_onnx(model, spec, partial, source=source.to_json())
    os.replace(partial, target)
    return target


def _default_onnx(engine_dir: Path) -> Path:
    try:
        from .default_model import ensure_default_onnx
    except ImportError as exc:
        raise ModelNotFoundError(
            "the embedded default model is not available in this build (mde_ros.models.default_model "
            f"missing: {exc}); pass a registry name or an .onnx file as `model`"
        ) from exc
    return Path(ensure_default_onnx(engine_dir))
