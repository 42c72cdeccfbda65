"""Event media: a JPEG snapshot at each event's peak and a stream-copied clip of each event (issue 5).

``ring`` keeps a camera's encoded packets (fed by the reader, only for cameras that keep media); ``render``
turns packets into a JPEG or a Matroska clip; ``store`` is the media directory (atomic writes, retention,
failures); ``recorder`` ties them to events: references decided on the scoring thread, files written on one
writer thread. ``settings`` is the config of all of it.
"""

from pipeline.media.recorder import CameraMedia, MediaRecorder, MediaStats, media_ref
from pipeline.media.ring import PacketRing, RingPacket, StreamSession
from pipeline.media.settings import ClipSettings, MediaSettings, SnapshotSettings
from pipeline.media.store import MediaStore

__all__ = [
    "CameraMedia",
    "ClipSettings",
    "MediaRecorder",
    "MediaSettings",
    "MediaStats",
    "MediaStore",
    "PacketRing",
    "RingPacket",
    "SnapshotSettings",
    "StreamSession",
    "media_ref",
]
