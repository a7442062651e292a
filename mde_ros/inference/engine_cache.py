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
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, MdeRosError

SIDECAR_FORMAT = 1


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
            "Lower `input_size` so the network input fits, let the node build an engine for the "
            "camera's own size (`engine_profile: static`, the default), or build one with a larger "
            f"profile (`mde-ros build-engine --model ... --max-shape {_fmt(wanted)}`, or `max_shape` "
            "of `create_backend`)."
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
    """A profile around `short_side` for cameras whose size is not known yet.

    opt is the network size of a 640x480 frame, rounded like frames are (`network_size`:
    518 -> 518x686), so TensorRT tunes its kernels for the shape it will really run. max covers
    landscape frames up to 2:1 and portrait up to 3:4 (not 2Sx2S, which sizes the activation memory
    for a square twice the short side); a known camera gets `static_profile` instead.
    """
    from ..processing import network_size

    s = max(multiple, round(short_side / multiple) * multiple)
    opt = network_size(480, 640, s, multiple)
    portrait = network_size(640, 480, s, multiple)
    return Profile(min=(1, s, s), opt=(1, *opt), max=(max_batch, portrait[0], 2 * s), multiple=multiple)


def frame_input_shape(height: int, width: int, short_side: int, multiple: int = 14) -> Shape:
    """(1, h, w): the network input the fast pre-processing (`processing.Preprocessor`, and
    `device_processing.TorchProcessing` on a GPU) makes of a height x width frame, long side capped."""
    from ..processing import limit_network_size, network_size

    size = network_size(height, width, short_side, multiple)
    return (1, *limit_network_size(size, height, width, short_side, multiple))


def static_profile(frame_height: int, frame_width: int, short_side: int, multiple: int = 14) -> Profile:
    """min = opt = max: the one network size a fixed camera's frames get (fastest kernels, least memory)."""
    return input_profile(frame_input_shape(frame_height, frame_width, short_side, multiple), multiple)


def input_profile(shape: Shape, multiple: int = 14) -> Profile:
    """min = opt = max = one network input (B, H, W): the static profile of the input a fixed
    camera's frames become, whatever pre-processing (fast or reference rounding) produced it."""
    shape = tuple(int(v) for v in shape)
    return Profile(min=shape, opt=shape, max=shape, multiple=multiple)


def make_profile(
    short_side: int,
    multiple: int = 14,
    min_shape: str = "",
    opt_shape: str = "",
    max_shape: str = "",
    frame_size: tuple[int, int] | None = None,
) -> Profile:
    """`static_profile` for a known (height, width) frame, else `default_profile`; any of
    min/opt/max overridden by 'BxHxW' strings."""
    if frame_size:
        base = static_profile(*frame_size, short_side, multiple)
    else:
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
    # Jetson AGX Orin, Orin NX and Orin Nano all report "Orin", sm_87: SMs and memory tell them apart.
    sm_count: int = 0
    total_memory_mb: int = 0

    def device_slug(self) -> str:
        """GPU, compute capability, SM count and memory: the part of a name tied to one device kind."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-") or "gpu"
        cc = self.compute_capability.replace(".", "")
        return f"{gpu}-sm{cc}-{self.sm_count}sms-{self.total_memory_mb}mb"

    def file_name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", self.onnx_stem)[:60]
        return (
            f"{stem}-{self.onnx_sha256[:16]}-trt{self.trt_version}-{self.device_slug()}-"
            f"{self.precision}-{self.profile}.engine"
        )


def timing_cache_path(engine_dir: Path, key: EngineKey) -> Path:
    """TensorRT's timing cache, shared by every engine built with this TensorRT on this device kind."""
    return Path(engine_dir) / f"timing-trt{key.trt_version}-{key.device_slug()}.cache"


def converted_onnx_path(engine_dir: Path, onnx_stem: str, onnx_sha256: str, converter_version: int) -> Path:
    """Where the fp16 converter's output for one ONNX content (not its path or mtime) is cached."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", onnx_stem)[:60]
    return Path(engine_dir) / f"{stem}-{onnx_sha256[:16]}-fp16v{converter_version}.onnx"


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a private temporary file in the same folder, then rename: readers (another node
    starting at the same time) see the old file or the whole new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def sidecar_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def write_engine(
    engine_path: Path,
    data: bytes,
    key: EngineKey,
    build_seconds: float,
    fidelity: dict,
    recipe: dict | None = None,
) -> None:
    """Atomically write the engine and then its sidecar (a crash leaves no valid-looking pair).

    `recipe` records how it was built (precision mode, converter version, profile, flags)."""
    atomic_write(engine_path, data)
    refusal_path(engine_path).unlink(missing_ok=True)
    meta = {
        "format": SIDECAR_FORMAT,
        **asdict(key),
        "engine_bytes": len(data),
        "engine_sha256": hashlib.sha256(data).hexdigest(),
        "build_seconds": round(build_seconds, 1),
        "fidelity": fidelity,
        "recipe": recipe or {},
    }
    atomic_write(sidecar_path(engine_path), json.dumps(meta, indent=1, sort_keys=True))


def refusal_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".refused.json")


def remember_refusal(engine_path: Path, key: EngineKey, reports: list[dict], threshold: float) -> None:
    """Record that this exact build was refused by its self-check, so that the next start does
    not spend minutes rebuilding an engine that will be refused again."""
    meta = {"format": SIDECAR_FORMAT, **asdict(key), "threshold": threshold, "fidelity": reports}
    atomic_write(refusal_path(engine_path), json.dumps(meta, indent=1, sort_keys=True))


def remembered_refusal(engine_path: Path, key: EngineKey, threshold: float) -> str:
    """Why a previous build of this exact engine was refused ("" when none, or when `threshold`
    now accepts the error measured then: the user raised it on purpose)."""
    path = refusal_path(engine_path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    if any(meta.get(f) != v for f, v in asdict(key).items()):
        return ""
    worst = max((r.get("rel_l1", float("inf")) for r in meta.get("fidelity", [])), default=float("inf"))
    if worst <= threshold:
        return ""
    return (
        f"this engine was refused by its self-check before (relative L1 {worst:.3g} > threshold "
        f"{threshold:g}; {path}); delete that file to retry, use precision fp32 or a newer TensorRT"
    )


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
            "`precision: fp32` (node parameter; `--precision fp32`), a newer TensorRT, or, if you accept "
            "the error, build it once with `mde-ros build-engine --fidelity-threshold X` (same "
            "--frame-size/--input-size as the node: it then loads that engine from the cache)."
        )


def fidelity_shapes(profile: Profile) -> list[Shape]:
    """Every distinct profile corner (batch 1): the self-check runs at more than one shape because
    broken fp16 builds (TensorRT 10.3 on Depth Anything) can be right at one and wrong at another."""
    shapes: list[Shape] = []
    for _, h, w in (profile.opt, profile.min, profile.max):
        if (1, h, w) not in shapes:
            shapes.append((1, h, w))
    return shapes


def fidelity_cases(profile: Profile, min_inputs: int = 2) -> list[tuple[Shape, int]]:
    """(shape, seed) of every self-check input: each distinct profile corner, and more seeds at the
    one shape of a static profile, so that no engine is accepted on a single input."""
    shapes = fidelity_shapes(profile)
    cases = [(shape, 0) for shape in shapes]
    for seed in range(1, min_inputs - len(shapes) + 1):
        cases.append((shapes[0], seed))
    return cases


def fidelity_inputs(shape: Shape, spec, seed: int = 0) -> np.ndarray:
    """Image-like normalised pixels: smooth shading plus hard-edged objects (the high-contrast
    edges of real frames are where fp16 attention logits grow), for the spec's mean/std."""
    import cv2

    batch, height, width = shape
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        y1, x1 = y0 + rng.integers(height // 8, height // 2), x0 + rng.integers(width // 8, width // 2)
        image[y0:y1, x0:x1] = rng.uniform(0, 255, 3)
    mean = np.asarray(spec.mean, np.float32) * 255
    std = np.asarray(spec.std, np.float32) * 255
    pixels = ((np.clip(image, 0, 255) - mean) / std).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(np.repeat(pixels, batch, 0), np.float32)


def fidelity_prompt(spec, pixels: np.ndarray) -> np.ndarray | None:
    """The prompt of the self-check's image (prompted models only), one row per batch item."""
    if not spec.needs_prompt:
        return None
    from ..models.prompts import prompt_fn_for

    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    rgb = np.clip((pixels[0].transpose(1, 2, 0) * std + mean) * 255, 0, 255).astype(np.uint8)
    return np.repeat(prompt_fn_for(spec)(rgb), pixels.shape[0], 0)
