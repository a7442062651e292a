"""`mde-ros bag`: the node's depth pipeline over a whole recorded rosbag2 bag (MCAP or sqlite3).

Same code path as the live node: `rgb_from_msg` decodes Image / CompressedImage, the CameraInfo
checks of `ros.camera_info`, `build_pipeline` from the node's parameters, and the scale estimators
fed through `ros.scale_topics.feed_*`. What differs is only the order, which offline can be
exact: every input is fed in header-stamp order (scale inputs before an image of the same stamp;
in trajectory mode an image waits until poses up to `scale.max_pose_gap` after it are in, so its
pose is interpolated rather than refused). Messages are re-ordered inside a window of
`reorder_window` seconds, which bounds memory. Every output keeps its input image's header and
bag timestamp.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import NodeConfig, from_flat
from ..errors import InvalidInputError, MdeRosError
from ..geometry.intrinsics import CameraIntrinsics
from ..pipeline import DepthPipeline, Frame
from ..processing import colorize
from ..ros.camera_info import check_image_size, intrinsics_from_info
from ..ros.image_conversion import ImageInputError, rgb_from_msg
from ..ros.scale_topics import feed_pose, feed_sparse_points, stamp_seconds
from . import messages
from .writer import BagError, BagWriter, qos_profile, typestore

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE_TYPES = {"odom": "nav_msgs/msg/Odometry", "pose": "geometry_msgs/msg/PoseStamped"}
POINT_CLOUD = "sensor_msgs/msg/PointCloud2"
# Output topics under the camera's namespace, as the node names them (INTERFACES.md, topics).
OUTPUTS = {
    "depth": "depth/image",  # metres only (REP 118)
    "relative": "depth/relative",  # unit-less, median 1, before a metric scale exists
    "camera_info": "depth/camera_info",
    "points": "depth/points",
    "colorized": "depth/colorized",
}
ROLE_IMAGE, ROLE_INFO, ROLE_POSE, ROLE_SPARSE = "image", "camera_info", "pose", "sparse_points"
# Messages held for re-ordering at most (bounds memory when stamps do not advance, e.g. all zero).
MAX_PENDING = 256


@dataclass
class BagOptions:
    """What to read, compute and write; `params` are the node's parameters (see bags.settings)."""

    params: dict[str, Any]
    image_topic: str | None = None
    camera_info_topic: str | None = None
    pose_topic: str | None = None  # odom or pose (by scale.pose_type), trajectory mode
    sparse_topic: str | None = None  # sparse mode
    copy: tuple[str, ...] = ()  # input topics copied as they are; ("all",) copies every topic
    points: bool = False
    colorized: bool = False
    namespace: str | None = None  # output namespace (default: the image topic's)
    storage: str = "mcap"
    compression: str = "none"
    overwrite: bool = False
    reorder_window: float = 1.0  # seconds of header-stamp disorder the bag may hold


@dataclass
class ScaleSegment:
    """A run of consecutive frames with the same scale status."""

    status: str
    first_stamp: float
    last_stamp: float
    frames: int = 1


@dataclass
class BagSummary:
    input: str
    output: str
    topics: dict[str, str] = field(default_factory=dict)  # role -> input topic
    frames: int = 0  # image messages read
    metric: int = 0  # depth frames written to depth/image
    relative: int = 0  # depth frames written to depth/relative
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> frames
    scale: list[ScaleSegment] = field(default_factory=list)
    scale_message: str = ""
    scale_counters: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)  # output topic -> messages
    model: str = ""
    backend: str = ""
    elapsed_s: float = 0.0  # the whole run
    load_s: float = 0.0  # of which model loading (ONNX export / engine build on first use)

    @property
    def frames_per_second(self) -> float:
        """Frames per second once the model is loaded (reading, inference and writing)."""
        busy = self.elapsed_s - self.load_s
        return self.frames / busy if busy > 0 else 0.0


# --- topic selection ---------------------------------------------------------------------------


def _is_output(topic: str) -> bool:
    """A depth node's own output (…/depth/…), never an input candidate."""
    return "/depth/" in f"{topic}/"


def _pick(kind: str, candidates: list[str], flag: str) -> str:
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise BagError(f"the bag has no {kind} topic; name one with {flag}")
    raise BagError(f"several {kind} topics ({', '.join(sorted(candidates))}); choose one with {flag}")


def _given(topic: str, types: dict[str, str], wanted: tuple[str, ...], flag: str) -> str:
    if topic not in types:
        raise BagError(f"{flag} {topic}: no such topic in the bag (topics: {', '.join(sorted(types))})")
    if types[topic] not in wanted:
        raise BagError(f"{flag} {topic} is {types[topic]}, expected {' or '.join(wanted)}")
    return topic


def camera_base(image_topic: str) -> str:
    """`/cam/image_raw/compressed` -> `/cam/image_raw` (image_transport's suffix removed)."""
    return image_topic[: -len("/compressed")] if image_topic.endswith("/compressed") else image_topic


def namespace_of(topic: str) -> str:
    return topic.rsplit("/", 1)[0]


def choose_topics(types: dict[str, str], options: BagOptions) -> dict[str, str]:
    """role -> input topic: the flags where given, else the only candidate (else a clear error)."""
    roles = {ROLE_IMAGE: _choose_image(types, options.image_topic)}
    roles[ROLE_INFO] = _choose_camera_info(types, options.camera_info_topic, roles[ROLE_IMAGE])
    mode = options.params["scale.mode"]
    if mode == "trajectory":
        pose_type = options.params["scale.pose_type"]
        wanted = (POSE_TYPES[pose_type],)
        flag = "--pose-topic"
        if options.pose_topic:
            roles[ROLE_POSE] = _given(options.pose_topic, types, wanted, flag)
        else:
            roles[ROLE_POSE] = _pick(
                f"{wanted[0]} ({pose_type})", [t for t, m in types.items() if m in wanted], flag
            )
    if mode == "sparse":
        flag = "--sparse-topic"
        if options.sparse_topic:
            roles[ROLE_SPARSE] = _given(options.sparse_topic, types, (POINT_CLOUD,), flag)
        else:
            clouds = [t for t, m in types.items() if m == POINT_CLOUD and not _is_output(t)]
            named = [t for t in clouds if t.endswith("sparse_points")]
            roles[ROLE_SPARSE] = _pick("sparse point cloud", named or clouds, flag)
    return roles


def _choose_image(types: dict[str, str], given: str | None) -> str:
    if given:
        return _given(given, types, IMAGE_TYPES, "--image-topic")
    images = [t for t, m in types.items() if m in IMAGE_TYPES and not _is_output(t)]
    # The raw stream and its image_transport copy are one camera: prefer the raw one (no decoding).
    raw = [t for t in images if not (t.endswith("/compressed") and camera_base(t) in images)]
    return _pick("camera image (sensor_msgs/Image or CompressedImage)", raw, "--image-topic")


def _choose_camera_info(types: dict[str, str], given: str | None, image_topic: str) -> str:
    if given:
        return _given(given, types, (CAMERA_INFO,), "--camera-info-topic")
    sibling = f"{namespace_of(camera_base(image_topic))}/camera_info"
    if types.get(sibling) == CAMERA_INFO:
        return sibling
    infos = [t for t, m in types.items() if m == CAMERA_INFO and not _is_output(t)]
    return _pick("sensor_msgs/CameraInfo", infos, "--camera-info-topic")


# --- the run -----------------------------------------------------------------------------------


def process_bag(
    input_path: str | Path,
    output_path: str | Path,
    options: BagOptions,
    progress: Callable[[int], Any] | None = None,
) -> BagSummary:
    """Depth for every image of one bag into a new bag at `output_path`.

    `progress(total_frames)` may return a progress bar (an object with `update(n)`, used as a
    context manager). Raises BagError for an unreadable bag or unusable topics.
    """
    from ..scale.factory import create_estimator

    started = time.monotonic()
    summary = BagSummary(str(input_path), str(output_path))
    try:
        settings = from_flat(NodeConfig, options.params)
        estimator = create_estimator(settings.scale)
    except ValueError as exc:
        raise BagError(f"invalid scale parameters: {exc}") from exc
    reader = open_bag(input_path)
    try:
        types = {topic: info.msgtype for topic, info in reader.topics.items()}
        roles = choose_topics(types, options)
        summary.topics = roles
        from ..pipeline_factory import build_pipeline

        pipeline = build_pipeline(settings, estimator)
        summary.load_s = time.monotonic() - started
        summary.model, summary.backend = pipeline.spec.name, pipeline.backend.describe()
        try:
            _run(reader, pipeline, roles, options, summary, output_path, input_path, progress)
        finally:
            pipeline.close()
    finally:
        reader.close()
    state = estimator.state
    summary.scale_message, summary.scale_counters = state.message, dict(state.counters)
    summary.elapsed_s = time.monotonic() - started
    return summary


def _run(
    reader: Any,
    pipeline: DepthPipeline,
    roles: dict[str, str],
    options: BagOptions,
    summary: BagSummary,
    output_path: str | Path,
    input_path: str | Path,
    progress: Callable[[int], Any] | None,
) -> None:
    total = reader.topics[roles[ROLE_IMAGE]].msgcount
    bar = progress(total) if progress else nullcontext()
    with BagWriter(output_path, options.storage, options.compression, options.overwrite) as writer, bar:
        run = _Run(pipeline, writer, roles, options, summary, bar if progress else None)
        copied = _copied_topics(reader, options.copy, writer)
        wanted = [c for c in reader.connections if c.topic in copied or c.topic in roles.values()]
        for connection, timestamp, raw in _messages(reader, wanted, input_path):
            if connection.topic in copied:
                writer.write(connection.topic, timestamp, raw)
            role = run.role_of.get(connection.topic)
            if role is not None:
                run.push(role, typestore().deserialize_cdr(raw, connection.msgtype), timestamp)
        run.flush()
        summary.written = dict(writer.counts)


def open_bag(path: str | Path) -> Any:
    """An opened rosbags Reader; BagError (naming the bag) when it is missing or unreadable."""
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises several types for corrupt metadata or storage
        raise BagError(f"{path}: not a readable rosbag2 bag ({type(exc).__name__}: {exc})") from exc
    return reader


def _messages(reader: Any, connections: list[Any], path: str | Path) -> Iterator[tuple[Any, int, bytes]]:
    """The reader's messages; a storage error mid-way becomes a BagError naming the bag."""
    iterator = reader.messages(connections=connections)
    count = 0
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # truncated chunks, bad compression, sqlite errors, ...
            raise BagError(
                f"{path}: unreadable after {count} messages ({type(exc).__name__}: {exc})"
            ) from exc
        count += 1
        yield item


def _copied_topics(reader: Any, copy: tuple[str, ...], writer: BagWriter) -> set[str]:
    """Register the input topics to copy with their own definition, hash and QoS profiles."""
    topics = set(reader.topics) if "all" in copy else set(copy)
    missing = topics - set(reader.topics)
    if missing:
        raise BagError(f"--copy {', '.join(sorted(missing))}: not in the bag")
    for connection in reader.connections:
        if connection.topic in topics:
            writer.add_topic(
                connection.topic,
                connection.msgtype,
                list(connection.ext.offered_qos_profiles),
                connection.msgdef.data or None,
                connection.digest or None,
            )
    return topics


class _Run:
    """Feeds one bag's inputs in stamp order through the pipeline and writes the outputs."""

    def __init__(
        self,
        pipeline: DepthPipeline,
        writer: BagWriter,
        roles: dict[str, str],
        options: BagOptions,
        summary: BagSummary,
        bar: Any,
    ) -> None:
        self.pipeline, self.writer, self.summary, self.bar = pipeline, writer, summary, bar
        self.options = options
        self.params = options.params
        self.role_of = {topic: role for role, topic in roles.items()}
        trajectory = self.params["scale.mode"] == "trajectory"
        self.lookahead = float(self.params["scale.max_pose_gap"]) if trajectory else 0.0
        namespace = options.namespace
        if namespace is None:
            namespace = namespace_of(camera_base(roles[ROLE_IMAGE]))
        self.out = {key: f"{namespace.rstrip('/')}/{name}" for key, name in OUTPUTS.items()}
        self.qos = [qos_profile(self.params["qos.output.reliability"], self.params["qos.output.depth"])]
        self.heap: list[tuple[float, int, int, str, Any, int]] = []
        self.sequence = 0
        self.newest = -math.inf
        self.info: Any = None
        self.intrinsics: tuple[Any, CameraIntrinsics] | None = None
        self.skipped: Counter[str] = Counter()

    # Re-ordering: an item leaves the heap once the newest stamp seen is `reorder_window` past it.
    def push(self, role: str, msg: Any, timestamp: int) -> None:
        stamp = stamp_seconds(msg.header.stamp)
        is_image = role == ROLE_IMAGE
        key = stamp + self.lookahead if is_image else stamp
        heapq.heappush(self.heap, (key, int(is_image), self.sequence, role, msg, timestamp))
        self.sequence += 1
        self.newest = max(self.newest, stamp)
        window = self.options.reorder_window
        while self.heap and (self.heap[0][0] < self.newest - window or len(self.heap) > MAX_PENDING):
            self._release(*heapq.heappop(self.heap)[3:])

    def flush(self) -> None:
        while self.heap:
            self._release(*heapq.heappop(self.heap)[3:])
        self.summary.skipped = dict(self.skipped)

    def _release(self, role: str, msg: Any, timestamp: int) -> None:
        if role == ROLE_IMAGE:
            self._image(msg, timestamp)
            if self.bar is not None:
                self.bar.update(1)
        elif role == ROLE_INFO:
            self.info = msg
        elif role == ROLE_POSE:
            feed_pose(self.pipeline.scale, msg, self.params["scale.pose_type"])
        elif role == ROLE_SPARSE:
            problem = feed_sparse_points(self.pipeline.scale, msg)
            if problem:
                log.debug("sparse points skipped: %s", problem[1])

    def _image(self, msg: Any, timestamp: int) -> None:
        self.summary.frames += 1
        stamp = stamp_seconds(msg.header.stamp)
        p = self.params
        try:
            rgb = rgb_from_msg(msg)
            if self.info is None:
                raise ImageInputError("no_camera_info", "no CameraInfo before this image")
            intrinsics = check_image_size(self._intrinsics(self.info), rgb.shape[1], rgb.shape[0])
            result = self.pipeline.process(
                Frame(rgb, intrinsics, stamp), self.options.points, p["points.stride"], p["points.max_range"]
            )
        except InvalidInputError as exc:
            self.skipped[getattr(exc, "reason", "invalid_input")] += 1
            return
        except MdeRosError:
            raise
        except Exception as exc:  # like the node: one bad frame never ends the run
            log.warning("frame at %.3f skipped, processing failed: %r", stamp, exc)
            self.skipped["processing_error"] += 1
            return
        self._timeline(stamp, self.pipeline.scale_status)
        if not result.metric and not p["relative.publish"]:
            self.skipped["relative (relative.publish: false)"] += 1
            return
        self._write(msg.header, timestamp, rgb, result)

    def _intrinsics(self, info: Any) -> CameraIntrinsics:
        if self.intrinsics is None or self.intrinsics[0] is not info:
            self.intrinsics = (info, intrinsics_from_info(info))
        return self.intrinsics[1]

    def _write(self, header: Any, timestamp: int, rgb: Any, result: Any) -> None:
        depth_topic = "depth" if result.metric else "relative"
        if result.metric:
            self.summary.metric += 1
        else:
            self.summary.relative += 1
        self._put(
            depth_topic, "sensor_msgs/msg/Image", timestamp, messages.depth_message(result.depth, header)
        )
        info = messages.camera_info_message(self.info, header)
        self._put("camera_info", CAMERA_INFO, timestamp, info)
        if self.options.colorized:
            colored = colorize(result.depth, self.params["depth.max"] or None)
            self._put(
                "colorized",
                "sensor_msgs/msg/Image",
                timestamp,
                messages.image_message(colored, "bgr8", header),
            )
        if self.options.points and result.points is not None:
            stride = self.params["points.stride"]
            cloud = messages.cloud_message(result.points, rgb[::stride, ::stride], header)
            self._put("points", POINT_CLOUD, timestamp, cloud)

    def _put(self, key: str, msgtype: str, timestamp: int, message: Any) -> None:
        topic = self.out[key]
        self.writer.add_topic(topic, msgtype, self.qos)
        self.writer.write_message(topic, timestamp, message)

    def _timeline(self, stamp: float, status: str) -> None:
        segments = self.summary.scale
        if segments and segments[-1].status == status:
            segments[-1].last_stamp = stamp
            segments[-1].frames += 1
        else:
            segments.append(ScaleSegment(status, stamp, stamp))
