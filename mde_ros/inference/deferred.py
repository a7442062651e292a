"""A TensorRT engine made when the first frame's size is known: a static profile for a fixed camera.

A camera's frames all have one size, so they all become one network input (B, H, W). An engine
whose profile is exactly that shape (min = opt = max) gets TensorRT's fastest kernels and the
least activation memory. The node does not know the size before the first frame arrives, so the
factory returns a `DeferredEngine`: everything that can be checked at start-up is checked there
(TensorRT imports, the GPU exists, the ONNX's contract), and the engine itself is built or
loaded from the cache at the first `infer` / `predict_frame`, for that input's shape (the cache
key holds the profile, so the next start loads it). A later input of another size gets its own
engine (logged); an engine that cannot be made is not retried for the same shape at every frame.
With `auto`, a failure at the first frame falls back to the next backend, as at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from ..errors import BackendUnavailableError
from ..models.spec import ModelSpec
from .base import Backend, DevicePrediction
from .engine_cache import Profile, frame_input_shape, input_profile

log = logging.getLogger(__name__)

EngineFactory = Callable[[Profile], Backend]


class DeferredEngine(Backend):
    """Creates its backend with `input_profile(shape)` for the first input shape it is given."""

    def __init__(
        self,
        spec: ModelSpec,
        create: EngineFactory,
        planned: str,
        fallback: Callable[[], Backend] | None = None,
    ) -> None:
        super().__init__(spec)
        self._create = create
        self._planned = planned  # what runs once the engine exists, for logs before that
        self._fallback = fallback  # `auto`: the next candidate when the engine cannot be made
        self.inner: Backend | None = None
        self.profile: Profile | None = None
        self._failed: dict[tuple[int, int, int], str] = {}  # shape -> why its engine was not made

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name if self.inner is not None else "tensorrt"

    @property
    def device(self) -> str:
        if self.inner is not None:
            return self.inner.device
        return f"{self._planned}; engine built or loaded at the first frame (static profile for its size)"

    def ready(self, shape: tuple[int, int, int]) -> Backend:
        """The backend for network inputs of (B, H, W) `shape`, made (or re-made) if needed."""
        if self.inner is not None and (self.profile is None or _covers(self.profile, shape)):
            return self.inner
        if shape in self._failed:
            raise BackendUnavailableError(self._failed[shape])
        profile = input_profile(shape, self.spec.patch_multiple)
        if self.inner is not None:
            log.warning(
                "network input changed from %s to %s (camera size changed?): using an engine for "
                "the new size (engine_profile: dynamic avoids per-size engines)",
                "x".join(map(str, self.profile.opt)),
                "x".join(map(str, shape)),
            )
            self.inner.close()
            self.inner = None
        log.info("TensorRT static profile for the first input: %s", profile.describe())
        try:
            self.inner, self.profile = self._create(profile), profile
        except Exception as exc:  # any failure: fall back (auto) or remember it (tensorrt)
            why = f"TensorRT engine for input {profile.describe()} not made ({type(exc).__name__}: {exc})"
            if self._fallback is None:
                self._failed[shape] = why + "; frames of this size are skipped (not retried until restart)"
                log.error(self._failed[shape])
                raise BackendUnavailableError(self._failed[shape]) from exc
            log.warning("backend auto: %s; falling back", why)
            self.inner, self.profile = self._fallback(), None
        return self.inner

    def infer(self, pixel_values: np.ndarray, prompt_ids: np.ndarray | None = None) -> np.ndarray:
        batch, _, height, width = pixel_values.shape
        return self.ready((batch, height, width)).infer(pixel_values, prompt_ids)

    def predict_frame(self, rgb: np.ndarray, short_side: int) -> DevicePrediction | None:
        # The shape the fast pre-processing gives this frame (the device path only runs it).
        shape = frame_input_shape(rgb.shape[0], rgb.shape[1], short_side, self.spec.patch_multiple)
        return self.ready(shape).predict_frame(rgb, short_side)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
            self.inner = None


def _covers(profile: Profile, shape: tuple[int, int, int]) -> bool:
    return all(lo <= v <= hi for lo, v, hi in zip(profile.min, shape, profile.max))
