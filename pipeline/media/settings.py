"""Configuration of event snapshots and clips: per camera (``snapshots:``, ``clips:``) and global (``media:``).

Both are off by default: a camera without them has no packet ring and costs nothing. The daemon's config embeds
these models; their bounds are the config's bounds.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline.strict import StrictModel

DEFAULT_MEDIA_PATH = Path(".lepton/media")
# Snapshot-only cameras keep this much before the scoring position: enough for a keyframe before any peak
# (the ring starts at a keyframe at or before it, whatever the GOP) and the scoring thread's lag.
SNAPSHOT_SPAN_S = 10.0


class SnapshotSettings(StrictModel):
    """A JPEG of the frame at the event's peak, with the worst region marked."""

    enabled: bool = Field(False, description="Keep a snapshot of each event of this camera")
    quality: int = Field(4, ge=2, le=31, description="JPEG quantiser: 2 best (largest) ... 31 worst")
    draw_box: bool = Field(True, description="Draw the event's worst region on the snapshot as a red rectangle")
    buffer_mb: float = Field(
        16.0, gt=0, le=1024, description="Most encoded video kept in memory for snapshots when clips are off (MB)"
    )


class ClipSettings(StrictModel):
    """A stream-copied Matroska clip of each event, from pre-roll before its start to post-roll after its end."""

    enabled: bool = Field(False, description="Keep a clip of each event of this camera")
    pre_roll_s: float = Field(
        5.0,
        ge=0,
        le=60,
        description="Seconds before the event's start (the clip starts at the keyframe at or before that)",
    )
    post_roll_s: float = Field(5.0, ge=0, le=60, description="Seconds after the event's end")
    max_s: float = Field(
        120.0,
        gt=0,
        le=1800,
        description="Longest event the buffer holds whole; a longer event's clip keeps its last part",
    )
    buffer_mb: float = Field(
        64.0,
        gt=0,
        le=4096,
        description="Most encoded media kept in memory for clips (MB); "
        "the hard bound when the bitrate is higher than max_s assumes",
    )


class MediaSettings(StrictModel):
    """Where snapshots and clips go, and how much of them is kept."""

    path: Path = Field(
        DEFAULT_MEDIA_PATH,
        description="Media directory (relative: to the working directory, like "
        "the outbox); events refer to files by their path relative to it",
    )
    max_total_mb: float = Field(2048.0, gt=0, description="Most disk the directory may use; oldest files go first")
    max_age_h: float | None = Field(168.0, gt=0, description="Files older than this are deleted; null: no age limit")
    queue: int = Field(
        64,
        ge=1,
        le=10000,
        description="Snapshots and clips waiting to be written; beyond it an event goes out without them (counted)",
    )
