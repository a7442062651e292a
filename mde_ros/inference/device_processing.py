"""Pre- and post-processing in torch, on the backend's device, so the frame crosses the bus once.

On a GPU backend the uint8 camera frame is copied once into a pinned host buffer and uploaded
(1/4 of the bytes of a float32 network input); resize + normalise + NCHW layout run on the GPU
and write straight into the engine's input binding; the network output is resized back to the
image size on the GPU and only that prediction comes back (one synchronisation per frame).
When the cloud is wanted, depth (from the scale the host estimated) and back-projection run on the
device too, from the device's copy of the prediction, and only the points come back.

The same code runs on CPU torch, which is how the tests compare it with `mde_ros.processing`
(the numpy/OpenCV pipeline): same bicubic resize (a = -0.75, half-pixel centres, edge replicate),
rounded and clamped to uint8 like OpenCV's uint8 resize, same bilinear output resize.
"""

from __future__ import annotations

import numpy as np

from ..geometry.intrinsics import CameraIntrinsics
from ..models.spec import ModelSpec
from .base import DepthMapping
from .engine_cache import frame_input_shape


class TorchProcessing:
    """Frame -> network input and network output -> image-size prediction, on `device` (torch)."""

    def __init__(self, spec: ModelSpec, short_side: int, device="cpu") -> None:
        import torch

        self.torch = torch
        self.spec = spec
        self.short_side = short_side
        self.device = torch.device(device)
        std = np.asarray(spec.std, np.float32)
        gain = 1.0 / (255.0 * std)
        bias = -np.asarray(spec.mean, np.float32) / std
        self._gain = torch.from_numpy(gain.astype(np.float32)).view(1, 3, 1, 1).to(self.device)
        self._bias = torch.from_numpy(bias.astype(np.float32)).view(1, 3, 1, 1).to(self.device)
        self._pinned: dict[tuple, object] = {}  # frame shape -> pinned host buffer (CUDA only)
        self._host_out: dict[tuple, object] = {}  # depth shape -> pinned host result buffer

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The CPU pre-processing's size (long side capped, extreme aspect ratios refused)."""
        return frame_input_shape(height, width, self.short_side, self.spec.patch_multiple)[1:]

    def upload(self, rgb: np.ndarray):
        """uint8 HxWx3 numpy -> uint8 HxWx3 tensor on the device (via a reused pinned buffer on CUDA)."""
        torch = self.torch
        frame = torch.from_numpy(np.ascontiguousarray(rgb))
        if self.device.type != "cuda":
            return frame
        pinned = self._pinned.get(rgb.shape)
        if pinned is None:
            pinned = self._pinned[rgb.shape] = torch.empty(rgb.shape, dtype=torch.uint8, pin_memory=True)
        pinned.copy_(frame)
        return pinned.to(self.device, non_blocking=True)

    def preprocess(self, frame, out=None):
        """uint8 HxWx3 tensor -> normalised float32 [1,3,h,w]; written into `out` when given (an
        engine's input binding)."""
        torch = self.torch
        height, width = int(frame.shape[0]), int(frame.shape[1])
        net_h, net_w = self.input_size(height, width)
        planar = frame.permute(2, 0, 1).unsqueeze(0).float()
        resized = torch.nn.functional.interpolate(
            planar, size=(net_h, net_w), mode="bicubic", align_corners=False
        )
        resized = resized.round_().clamp_(0, 255)  # OpenCV's uint8 resize saturates to uint8
        if out is None:
            out = torch.empty((1, 3, net_h, net_w), dtype=torch.float32, device=frame.device)
        torch.addcmul(self._bias, resized, self._gain, out=out)
        return out

    def postprocess(self, raw, height: int, width: int):
        """Network output [1,h,w] (or [h,w]) -> [H,W] float32 at the image size, bilinear like
        `processing.resize_prediction` (OpenCV INTER_LINEAR = half-pixel centres, no antialias)."""
        torch = self.torch
        prediction = raw.reshape(1, 1, *raw.shape[-2:]).float()
        if tuple(prediction.shape[-2:]) != (height, width):
            prediction = torch.nn.functional.interpolate(
                prediction, size=(height, width), mode="bilinear", align_corners=False
            )
        return prediction[0, 0]

    def download(self, tensor) -> np.ndarray:
        """Device tensor -> numpy, through a reused pinned buffer and one stream synchronisation.
        The result is a fresh array (not the reused buffer): callers keep results across frames."""
        if tensor.device.type != "cuda":
            return tensor.detach().numpy().copy()  # may be a view of a reused network output
        host = self._host_out.get(tuple(tensor.shape))
        if host is None:
            host = self.torch.empty(tuple(tensor.shape), dtype=tensor.dtype, pin_memory=True)
            self._host_out[tuple(tensor.shape)] = host
        host.copy_(tensor, non_blocking=True)
        self.torch.cuda.current_stream(tensor.device).synchronize()
        return host.numpy().copy()

    def depth(self, prediction, mapping: DepthMapping):
        """Prediction [H,W] on the device -> metres on the device, as the host pipeline computes
        them (same float32 operations in the same order, see `DepthMapping`)."""
        torch = self.torch
        p = prediction.float()
        nan = torch.full_like(p, float("nan"))
        if mapping.inverse:
            inverse = p * np.float32(mapping.gains[0]) + np.float32(mapping.offset)
            depth = torch.where(inverse > 1e-6, 1.0 / inverse, nan)
        else:
            depth = p
            for gain in mapping.gains:
                depth = depth * np.float32(gain)
            depth = torch.where(depth > 0, depth, nan)
        if mapping.depth_max > 0:
            depth = torch.where(depth > mapping.depth_max, torch.full_like(depth, float("inf")), depth)
        return depth

    def points(
        self,
        prediction,
        mapping: DepthMapping,
        intr: CameraIntrinsics,
        stride: int = 1,
        max_range: float = 0.0,
    ) -> np.ndarray:
        """Prediction on the device -> organised cloud on the host: depth and back-projection run on
        the device, only the [H',W',3] points cross the bus (one synchronisation)."""
        return self.download(self.backproject(self.depth(prediction, mapping), intr, stride, max_range))

    def backproject(self, depth, intr: CameraIntrinsics, stride: int = 1, max_range: float = 0.0):
        """Depth [H,W] on the device -> organised [H',W',3] float32 points on the device, with the
        conventions of `geometry.pointcloud.backproject` (REP 118: NaN for no measurement, +Inf
        for too far: +Inf depth or beyond `max_range`)."""
        torch = self.torch
        if tuple(depth.shape) != (intr.height, intr.width):
            raise ValueError(
                f"depth {tuple(depth.shape)[::-1]} does not match intrinsics {intr.width}x{intr.height}"
            )
        z = depth[::stride, ::stride].float()
        invalid = ~(z > 0)
        far = z > max_range if max_range > 0 else torch.isposinf(z)
        z = torch.where(invalid, torch.full_like(z, float("nan")), z)
        u = torch.arange(0, intr.width, stride, device=z.device, dtype=torch.float32)
        v = torch.arange(0, intr.height, stride, device=z.device, dtype=torch.float32)
        ray_x = (u - np.float32(intr.cx)) / np.float32(intr.fx)
        ray_y = (v - np.float32(intr.cy)) / np.float32(intr.fy)
        points = torch.stack((z * ray_x[None, :], z * ray_y[:, None], z), dim=-1)
        return torch.where(far[..., None], torch.full_like(points, float("inf")), points)
