"""A rosbag2-compatible bag writer (MCAP or sqlite3) on top of `rosbags`, shared by `mde-ros bag`
and the demo recorder.

What rosbag2 tools need and the plain MCAP writer did not give: `metadata.yaml`, the publisher's
`offered_qos_profiles` per topic (so `ros2 bag play` republishes with the recorded QoS), the type
hash, and one schema per message type. The bag is written into a hidden sibling folder and renamed
into place by `close()`: an interrupted run never leaves a folder under the final name.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import MdeRosError

log = logging.getLogger(__name__)

STORAGES = ("mcap", "sqlite3")
COMPRESSIONS = ("none", "zstd")
# Keep-last depth recorded for topics this package publishes (the node's default output depth is 1,
# a recorder/player wants more room).
DEFAULT_QOS_DEPTH = 10


class BagError(MdeRosError):
    """A bag cannot be read or written."""


@cache
def typestore() -> Any:
    """The ROS 2 Kilted type store (message classes, CDR (de)serialisers, definitions, hashes)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def qos_profile(
    reliability: str = "reliable",
    depth: int = DEFAULT_QOS_DEPTH,
    durability: str = "volatile",
    history: str = "keep_last",
) -> Any:
    """A rosbags Qos from policy names (rclpy's enum names work too: `ReliabilityPolicy.RELIABLE.name`)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    default = QosTime(0, 0)  # 0 = the RMW default (infinite) for deadline, lifespan and lease
    return Qos(
        QosHistory[history.upper()],
        int(depth),
        QosReliability[reliability.upper()],
        QosDurability[durability.upper()],
        default,
        default,
        QosLiveliness.AUTOMATIC,
        default,
        False,
    )


class BagWriter:
    """Writes one rosbag2 bag at `path`; use as a context manager (an exception aborts the bag)."""

    def __init__(
        self, path: str | Path, storage: str = "mcap", compression: str = "none", overwrite: bool = False
    ) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        if compression not in COMPRESSIONS:
            raise BagError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise BagError(f"{self.path} exists; choose another output or pass --overwrite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written inside a hidden sibling folder (same file system, so the final rename is atomic);
        # the bag folder itself has the final name, because rosbag2 names its storage file after it.
        self.partial = self.path.parent / f".{self.path.name}.partial-{uuid.uuid4().hex[:8]}"
        self.partial.mkdir()
        self.overwrite = overwrite
        self._writer = Writer(
            self.partial / self.path.name,
            version=Writer.VERSION_LATEST,
            storage_plugin=StoragePlugin[storage.upper()],
        )
        if compression == "zstd":
            from rosbags.rosbag2 import CompressionFormat, CompressionMode

            self._writer.set_compression(
                CompressionMode.STORAGE if storage == "mcap" else CompressionMode.MESSAGE,
                CompressionFormat.ZSTD,
            )
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add_topic(
        self,
        topic: str,
        msgtype: str,
        qos: list[Any] | None = None,
        msgdef: str | None = None,
        rihs01: str | None = None,
    ) -> None:
        """Register `topic` once (definition and hash from the type store unless given, e.g. when
        copying a topic from another bag)."""
        if topic in self._connections:
            return
        known = msgdef is not None and rihs01
        self._connections[topic] = self._writer.add_connection(
            topic,
            msgtype,
            typestore=None if known else typestore(),
            msgdef=msgdef if known else None,
            rihs01=rihs01 if known else None,
            offered_qos_profiles=qos if qos is not None else [qos_profile()],
        )
        self.counts[topic] = 0

    def has_topic(self, topic: str) -> bool:
        return topic in self._connections

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        """Write one CDR-serialised message (`add_topic` first)."""
        self._writer.write(self._connections[topic], int(timestamp_ns), data)
        self.counts[topic] += 1

    def write_message(self, topic: str, timestamp_ns: int, message: Any) -> None:
        """Serialise a rosbags message object and write it."""
        self.write(topic, timestamp_ns, typestore().serialize_cdr(message, message.__msgtype__))

    def close(self) -> Path:
        """Finish the storage file and metadata.yaml, then move the bag to its final name."""
        self._writer.close()
        if self.path.exists() and self.overwrite:
            shutil.rmtree(self.path)
        (self.partial / self.path.name).rename(self.path)
        self.partial.rmdir()
        return self.path

    def abort(self) -> None:
        """Drop the partial bag (nothing appears under the final name)."""
        try:
            self._writer.abort()
        finally:
            shutil.rmtree(self.partial, ignore_errors=True)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
