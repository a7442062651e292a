"""TensorRT-free parts of the TensorRT backend: profiles, cache names, sidecar checks, fidelity.

Everything here runs (and is tested) without TensorRT or a GPU; `tensorrt_backend` only adds the
calls into TensorRT itself.

Cache layout (in the engine folder, see `mde_ros.paths.engine_dir`):
  <onnx stem>-<onnx sha256[:16]>-trt<version>-<gpu>-sm<cc>-<precision>-<profile>.engine
  <same>.engine.json   sidecar: every key field + the engine's size and sha256
An engine is used only when its sidecar exists, every field matches the current ONNX / TensorRT /
GPU / precision / profile, and the engine file's size and sha256 match: a truncated, corrupt or
stale engine is rebuilt, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, MdeRosError

SIDECAR_FORMAT = 1
PRECISIONS = ("fp16", "fp32")


class EngineFidelityError(MdeRosError):
    """A freshly built engine disagrees with the ONNX reference beyond the threshold."""


class ProfileError(InvalidInputError):
    """An input shape the engine's optimization profile does not cover, or a bad profile."""


Shape = tuple[int, int, int]  # (batch, height, width) of `pixel_values`; channels are always 3


@dataclass(frozen=True)
class Profile:
    """TensorRT optimization profile for `pixel_values` [B,3,H,W]: min / opt / max (B,H,W)."""

    min: Shape
    opt: Shape
    max: Shape
    multiple: int = 14

    def __post_init__(self) -> None:
        for label, shape in (("min", self.min), ("opt", self.opt), ("max", self.max)):
            if len(shape) != 3 or any(int(v) <= 0 for v in shape):
                raise ProfileError(f"profile {label} must be 3 positive numbers BxHxW, got {shape}")
            if shape[1] % self.multiple or shape[2] % self.multiple:
                raise ProfileError(
                    f"profile {label} {_fmt(shape)}: height and width must be multiples of {self.multiple}"
                )
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise ProfileError(f"profile must satisfy min <= opt <= max per axis, got {self.describe()}")

    def describe(self) -> str:
        return f"min {_fmt(self.min)}, opt {_fmt(self.opt)}, max {_fmt(self.max)}"

    def slug(self) -> str:
        return "-".join(_fmt(s) for s in (self.min, self.opt, self.max))

    def tensor_shapes(self) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) as full [B,3,H,W] shapes for `IOptimizationProfile.set_shape`."""
        return tuple((b, 3, h, w) for b, h, w in (self.min, self.opt, self.max))

    def check(self, shape: tuple[int, ...]) -> None:
        """Raise ProfileError with the remedy when `pixel_values` of `shape` is outside the profile."""
        if len(shape) != 4 or shape[1] != 3:
            raise ProfileError(f"pixel_values must be [B,3,H,W], got {tuple(shape)}")
        bhw = (shape[0], shape[2], shape[3])
        if all(lo <= v <= hi for lo, v, hi in zip(self.min, bhw, self.max)):
            return
        wanted = tuple(max(v, hi) for v, hi in zip(bhw, self.max))
        raise ProfileError(
            f"input {_fmt(bhw)} (BxHxW) is outside the TensorRT engine profile ({self.describe()}). "
            f"Either lower `input_size` so the network input fits, or rebuild the engine with a larger "
            f"profile, e.g. `mde-ros build-engine --model ... --max-shape {_fmt(wanted)}` (or the "
            "`tensorrt.max_shape` parameter); the engine is rebuilt automatically when the profile changes."
        )


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(v)) for v in shape)


def parse_shape(text: str) -> Shape:
    """'1x252x336' (BxHxW) or '252x336' (HxW, batch 1) -> (B, H, W)."""
    parts = [p for p in re.split(r"[x,\s]+", text.strip().lower()) if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ProfileError(f"cannot parse shape {text!r}: expected BxHxW like 1x252x336") from None
    if len(values) == 2:
        values = (1, *values)
    if len(values) != 3:
        raise ProfileError(f"cannot parse shape {text!r}: expected BxHxW like 1x252x336")
    return values  # type: ignore[return-value]


def default_profile(short_side: int, multiple: int = 14, max_batch: int = 1) -> Profile:
    """A profile around `short_side`: landscape and portrait images up to 2:1 aspect ratio.

    opt is the 4:3 landscape size TensorRT tunes kernels for; a narrower range gives faster
    kernels, so pass an explicit profile when the camera size is known.
    """
    s = max(multiple, round(short_side / multiple) * multiple)
    wide = int(np.ceil(s * 4 / 3 / multiple) * multiple)
    return Profile(min=(1, s, s), opt=(1, s, wide), max=(max_batch, 2 * s, 2 * s), multiple=multiple)


def make_profile(
    short_side: int, multiple: int = 14, min_shape: str = "", opt_shape: str = "", max_shape: str = ""
) -> Profile:
    """`default_profile` with any of min/opt/max overridden by 'BxHxW' strings."""
    base = default_profile(short_side, multiple)
    return Profile(
        min=parse_shape(min_shape) if min_shape else base.min,
        opt=parse_shape(opt_shape) if opt_shape else base.opt,
        max=parse_shape(max_shape) if max_shape else base.max,
        multiple=multiple,
    )


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; any difference means a different cache file."""

    onnx_stem: str
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.6"
    precision: str
    profile: str  # Profile.slug()

    def file_name(self) -> str:
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-") or "gpu"
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", self.onnx_stem)[:60]
        cc = self.compute_capability.replace(".", "")
        return (
            f"{stem}-{self.onnx_sha256[:16]}-trt{self.trt_version}-{gpu}-sm{cc}-"
            f"{self.precision}-{self.profile}.engine"
        )


def sidecar_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def write_engine(
    engine_path: Path, data: bytes, key: EngineKey, build_seconds: float, fidelity: dict
) -> None:
    """Atomically write the engine and then its sidecar (a crash leaves no valid-looking pair)."""
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(f".{engine_path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, engine_path)
    meta = {
        "format": SIDECAR_FORMAT,
        **asdict(key),
        "engine_bytes": len(data),
        "engine_sha256": hashlib.sha256(data).hexdigest(),
        "build_seconds": round(build_seconds, 1),
        "fidelity": fidelity,
    }
    tmp = sidecar_path(engine_path).with_name(f".{engine_path.name}.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp, sidecar_path(engine_path))


def validate_cached_engine(engine_path: Path, key: EngineKey) -> tuple[bytes | None, str]:
    """(engine bytes, "") when the cached engine is sound for `key`, else (None, why it is not)."""
    side = sidecar_path(engine_path)
    if not engine_path.is_file():
        return None, "no cached engine"
    if not side.is_file():
        return None, "cached engine has no sidecar (interrupted build?)"
    try:
        meta = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"sidecar unreadable ({exc})"
    if meta.get("format") != SIDECAR_FORMAT:
        return None, f"sidecar format {meta.get('format')} != {SIDECAR_FORMAT}"
    for field, value in asdict(key).items():
        if meta.get(field) != value:
            return None, f"stale engine: {field} is {meta.get(field)!r}, now {value!r}"
    data = engine_path.read_bytes()
    if len(data) != meta.get("engine_bytes"):
        return (
            None,
            f"engine file truncated or changed ({len(data)} bytes, sidecar says {meta.get('engine_bytes')})",
        )
    if hashlib.sha256(data).hexdigest() != meta.get("engine_sha256"):
        return None, "engine file corrupt (sha256 differs from its sidecar)"
    return data, ""


def fidelity_report(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Relative L1 error (sum|c-r| / sum|r|), max abs error and max relative error (to max|r|)."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise EngineFidelityError(f"engine output shape {candidate.shape} != reference {reference.shape}")
    if not np.isfinite(candidate).all():
        bad = int((~np.isfinite(candidate)).sum())
        return {"rel_l1": float("inf"), "max_abs": float("inf"), "max_rel": float("inf"), "non_finite": bad}
    diff = np.abs(candidate - reference)
    scale = max(float(np.abs(reference).max()), 1e-12)
    return {
        "rel_l1": float(diff.sum() / max(float(np.abs(reference).sum()), 1e-12)),
        "max_abs": float(diff.max()),
        "max_rel": float(diff.max() / scale),
        "non_finite": 0,
    }


def check_fidelity(report: dict[str, float], threshold: float, what: str) -> None:
    """Refuse an engine whose relative L1 error exceeds `threshold`, with the numbers."""
    if report.get("non_finite") or not report["rel_l1"] <= threshold:
        raise EngineFidelityError(
            f"{what} disagrees with the ONNX Runtime fp32 reference: relative L1 error "
            f"{report['rel_l1']:.3g} (threshold {threshold:g}), max abs {report['max_abs']:.3g}, "
            f"non-finite outputs {report.get('non_finite', 0)}. The engine was NOT cached. Try "
            "`precision: fp32`, a newer TensorRT, or raise `tensorrt.fidelity_threshold` if you accept it."
        )
