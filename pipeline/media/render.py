"""Turning ring packets into files: a JPEG of one frame with a box drawn on it, and a stream-copied clip.

Both run on the media writer thread, never on the scoring thread.

* **Snapshot**: decode the GOP up to the wanted frame (one decoder per snapshot, from the session's codec
  parameters), convert that one frame to RGB at the source's resolution, draw the event's box as a rectangle
  with numpy, encode it with FFmpeg's MJPEG encoder (``yuvj420p``, full range). No Pillow: PyAV already carries
  everything needed.
* **Clip**: remux packets into Matroska without decoding (stream copy): every packet's bytes go out unchanged,
  with timestamps rebased so the clip starts at 0. Matroska rather than MP4 because it takes every codec a
  camera may send (H.264/H.265, AAC, Opus, G.711, PCM) and a clip cut short (power loss) still plays.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, cast

import av
import numpy as np

from pipeline.media.ring import RingPacket

Box = tuple[float, float, float, float]

_OUT_TIME_BASE = Fraction(1, 1000)  # Matroska's native millisecond grid
_BOX_RGB = (255, 32, 32)
_FF_QP2LAMBDA = 118  # FFmpeg's scale from a quantiser to the lambda global_quality wants


class RenderError(ValueError):
    """The packets given cannot produce the wanted output (nothing decodable, no video)."""


def decode_frame(packets: Sequence[RingPacket], pts: float) -> np.ndarray:
    """The RGB frame (H, W, 3) shown at ``pts``: the first decoded at or after it, else the last before it."""
    video = [p for p in packets if p.kind == "video"]
    if not video:
        raise RenderError("no video packets")
    session = video[0].session
    # a video codec's name: a video decoder (the stubs know that only of literal names)
    decoder = cast(av.VideoCodecContext, av.CodecContext.create(session.codec_names["video"], "r"))
    extradata = session.templates["video"].codec_context.extradata
    if extradata:
        decoder.extradata = extradata
    decoder.thread_type = "NONE"  # a GOP or less: threads would only add delay and stacks
    chosen: Any = None
    for p in [*video, None]:  # None flushes the decoder's delayed frames
        try:
            frames = decoder.decode(_packet(p, pts_base=0.0) if p is not None else None)
        except (av.error.FFmpegError, ValueError):
            continue  # one undecodable packet: the frame we want may still come
        for frame in frames:  # decoders return frames in presentation order
            chosen = frame
            # packets go in on the 1 ms grid (``_packet``); a bare decoder does not always say so on its frames
            if frame.pts is not None and frame.pts * _OUT_TIME_BASE >= pts - 1e-3:
                return np.asarray(chosen.to_ndarray(format="rgb24"))
    if chosen is None:
        raise RenderError("no frame decoded")
    return np.asarray(chosen.to_ndarray(format="rgb24"))


def draw_box(rgb: np.ndarray, box: Box, *, thickness: int | None = None) -> np.ndarray:
    """Draw ``box`` (x0, y0, x1, y1 as fractions of the frame) as a red rectangle, in place; returns ``rgb``.

    The line is at least 3 pixels (``height / 120``, so 6 at 720p): thinner lines blur away in JPEG's 4:2:0
    chroma.
    """
    h, w = rgb.shape[:2]
    t = thickness or max(3, round(h / 120))
    x0 = int(np.clip(round(box[0] * w), 0, w - 1))
    x1 = int(np.clip(round(box[2] * w), x0 + 1, w))
    y0 = int(np.clip(round(box[1] * h), 0, h - 1))
    y1 = int(np.clip(round(box[3] * h), y0 + 1, h))
    colour = np.array(_BOX_RGB, dtype=np.uint8)
    rgb[y0 : min(y0 + t, y1), x0:x1] = colour
    rgb[max(y1 - t, y0) : y1, x0:x1] = colour
    rgb[y0:y1, x0 : min(x0 + t, x1)] = colour
    rgb[y0:y1, max(x1 - t, x0) : x1] = colour
    return rgb


def encode_jpeg(rgb: np.ndarray, *, quality: int = 4) -> bytes:
    """JPEG bytes of an RGB frame; ``quality`` is MJPEG's quantiser (2 best ... 31 worst)."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:  # 4:2:0 needs even sizes
        rgb = np.ascontiguousarray(rgb[: h - h % 2, : w - w % 2])
        h, w = rgb.shape[:2]
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = w, h
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    encoder.qscale = True
    encoder.global_quality = quality * _FF_QP2LAMBDA
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuvj420p")
    frame.pts = 0
    return b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])


def snapshot_jpeg(packets: Sequence[RingPacket], pts: float, box: Box | None, *, quality: int = 4) -> bytes:
    """The JPEG of the frame at ``pts`` with ``box`` drawn on it (no box: the plain frame)."""
    rgb = decode_frame(packets, pts)
    if box is not None:
        draw_box(rgb, box)
    return encode_jpeg(rgb, quality=quality)


def write_clip(packets: Sequence[RingPacket], out: str | Path | BinaryIO) -> float:
    """Stream-copy ``packets`` (one session, in demux order) into a Matroska file; returns its duration (s).

    Timestamps are rebased to the first packet's pts (a video keyframe), so the clip starts at 0.
    """
    if not packets:
        raise RenderError("no packets")
    session = packets[0].session
    base = packets[0].pts
    container = av.open(out, "w", format="matroska")
    try:
        streams = {
            kind: container.add_stream_from_template(t)
            for kind, t in session.templates.items()
            if any(p.kind == kind for p in packets)
        }
        for s in streams.values():
            s.time_base = _OUT_TIME_BASE
        end = 0.0
        for p in packets:
            stream = streams.get(p.kind)
            if stream is None:
                continue
            pkt = _packet(p, pts_base=base)
            pkt.stream = stream
            container.mux(pkt)
            end = max(end, p.pts + p.duration - base)
    finally:
        container.close()
    return end


def _packet(p: RingPacket, *, pts_base: float) -> Any:
    pkt = av.Packet(p.data)
    pkt.time_base = _OUT_TIME_BASE
    pkt.pts = round((p.pts - pts_base) * 1000)
    pkt.dts = round((p.dts - pts_base) * 1000)
    pkt.duration = round(p.duration * 1000)
    pkt.is_keyframe = p.keyframe
    return pkt
