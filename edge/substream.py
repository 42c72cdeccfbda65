"""Substreams for simulated cameras: a clip re-encoded at a detect resolution, frame for frame.

An IP camera sends a low-resolution substream beside its main stream: the same view at the same frame times,
usually with the same keyframe interval. ``edge simulate --substream WxH`` and ``edge bench --detect-size WxH``
serve one made here beside each clip: every video frame scaled (swscale, area averaging) and encoded with libx264
at the source's frame times and keyframe interval (no B-frames, one slice per frame: FACTS.md) and at the
source's bit rate scaled by the area (a 3 Mbit/s 720p camera: 750 kbit/s at 640x360, as cameras are set up; the
decoding cost follows the bit rate, so a cheaper substream would flatter it), the audio packets copied unchanged.
Made once per clip and size and kept (written atomically).
"""

from __future__ import annotations

import argparse
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

MIN_SIDE, MAX_SIDE = 16, 4096
MIN_KBPS = 64
VERSION = 2  # in the file name: a substream made by an older recipe is made again


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. ``640x360``) as (width, height): even numbers in 16..4096 (H.264's 4:2:0 needs even sides)."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}")
    size = int(w), int(h)
    if not all(MIN_SIDE <= v <= MAX_SIDE and v % 2 == 0 for v in size):
        raise argparse.ArgumentTypeError(f"{text}: width and height must be even numbers in {MIN_SIDE}-{MAX_SIDE}")
    return size


def substream_path(clip: Path, size: tuple[int, int], folder: Path) -> Path:
    return folder / f"{clip.stem}-sub{size[0]}x{size[1]}-v{VERSION}.mkv"


def ensure_substream(clip: Path, size: tuple[int, int], folder: Path) -> Path:
    """The substream of ``clip`` at ``size`` in ``folder``, made unless a copy newer than the clip is there."""
    out = substream_path(clip, size, folder)
    if not out.exists() or out.stat().st_mtime < clip.stat().st_mtime:
        folder.mkdir(parents=True, exist_ok=True)
        make_substream(clip, size, out)
    return out


def _probe(container: Any, stream: Any) -> tuple[int, float]:
    """The keyframe interval at the start of ``stream`` in frames (2 s of frames when it has one keyframe) and its
    bit rate in kbit/s."""
    keys: list[int] = []
    size, first, last = 0, None, None
    for i, packet in enumerate(container.demux(stream)):
        if not packet.size:
            continue
        size += packet.size
        if packet.pts is not None and packet.time_base is not None:
            t = float(packet.pts * packet.time_base)
            first, last = t if first is None else min(first, t), t if last is None else max(last, t)
        if packet.is_keyframe and len(keys) < 2:
            keys.append(i)
    container.seek(0)
    rate = float(stream.average_rate or 25)
    gop = keys[1] - keys[0] if len(keys) == 2 else max(1, round(2 * rate))
    seconds = (last - first + 1 / rate) if first is not None and last is not None else 1.0
    return gop, size * 8 / 1000 / max(seconds, 1e-3)


def make_substream(clip: Path, size: tuple[int, int], out: Path) -> Path:
    """Write ``clip`` scaled to ``size`` (H.264, its frame times and keyframe interval; its audio copied) to ``out``."""
    import av

    tmp = out.with_name(out.name + ".part")
    with av.open(str(clip)) as src:
        if not src.streams.video:
            raise ValueError(f"{clip}: no video stream to make a substream of")
        v = src.streams.video[0]
        gop, kbps = _probe(src, v)
        kbps = max(MIN_KBPS, round(kbps * size[0] * size[1] / (v.codec_context.width * v.codec_context.height)))
        a = src.streams.audio[0] if src.streams.audio else None
        with av.open(str(tmp), "w", format="matroska") as dst:
            params = (
                f"bframes=0:keyint={gop}:min-keyint={gop}:scenecut=0:sliced-threads=0:"
                f"vbv-maxrate={round(kbps * 1.2)}:vbv-bufsize={2 * kbps}"
            )
            vs = dst.add_stream(
                "libx264", rate=v.average_rate or Fraction(25), options={"preset": "veryfast", "x264-params": params}
            )
            vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
            vs.bit_rate = kbps * 1000
            if v.time_base is not None:
                vs.codec_context.time_base = v.time_base
            audio = dst.add_stream_from_template(a) if a is not None else None
            for packet in src.demux([s for s in (v, a) if s is not None]):
                if packet.stream is a and audio is not None:
                    if packet.dts is not None:  # not the demuxer's flush packet
                        packet.stream = audio
                        dst.mux(packet)
                    continue
                for frame in packet.decode():
                    if not isinstance(frame, av.VideoFrame):
                        continue
                    small = frame.reformat(width=size[0], height=size[1], format="yuv420p", interpolation="AREA")
                    small.pts, small.time_base = frame.pts, frame.time_base
                    dst.mux(vs.encode(small))
            dst.mux(vs.encode(None))
    os.replace(tmp, out)
    return out
