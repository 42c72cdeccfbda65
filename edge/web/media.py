"""Pictures and video for the console: the heat-map over a snapshot, a clip as MP4, the live frame as JPEG.

* **Heat-map** (OpenCV): the models' maps at the event's peak (``pipeline.live.EventTraces``): the video model's
  per-patch errors and the temporal model's per-cell errors, each on its calibrated scale less the discount fusion
  gives it (so the heat reads like the fused score), each spread over its grid (a pixel takes the highest of the
  patches that cover it), scaled to the snapshot, smoothed; the higher of the two at each pixel is coloured
  (``COLORMAP_JET``, 0 to twice the threshold) and blended over the picture: opaque where it reaches the
  threshold, transparent near 0, so the scene stays readable. The event's worst region is boxed.
* **Clip as MP4**: clips are Matroska (they take every codec a camera sends); browsers play MP4. H.264, H.265,
  AV1 and VP9 video and AAC, MP3 and Opus audio are remuxed without re-encoding (stream copy, ``faststart``);
  other video is encoded to H.264, other audio to AAC (G.711 from a camera, say). Written once per clip to a
  cache folder and served from there (range requests: the browser seeks).
* **Live frame**: the luma the model last saw (its input size), encoded as JPEG: no extra decoding.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

log = logging.getLogger(__name__)

_COPY_VIDEO = {"h264", "hevc", "av1", "vp9"}
_COPY_AUDIO = {"aac", "mp3", "opus"}
_BOX_BGR = (32, 32, 255)


class MediaUnavailableError(ValueError):
    """The file cannot be made into what was asked (no video stream, an unreadable file)."""


def heat_values(heat: dict[str, Any]) -> np.ndarray:
    """One model's stored grid spread over its picture: (height, width) float32, each pixel the highest value of
    the patches covering it."""
    grid = np.asarray(heat["grid"], dtype=np.float32)
    width, height, patch, stride = (int(heat[k]) for k in ("width", "height", "patch", "stride"))
    out = np.zeros((height, width), dtype=np.float32)
    for i, j in zip(*np.nonzero(grid > 0), strict=True):
        y, x = int(i) * stride, int(j) * stride
        np.maximum(out[y : y + patch, x : x + patch], grid[i, j], out=out[y : y + patch, x : x + patch])
    return out


def combined_heat(heat: dict[str, dict[str, Any]], width: int, height: int) -> np.ndarray:
    """Every model's map (less its discount) at ``width`` x ``height``, smoothed; the highest at each pixel."""
    import cv2

    out = np.zeros((height, width), dtype=np.float32)
    for part in heat.values():
        values = cv2.resize(heat_values(part), (width, height), interpolation=cv2.INTER_LINEAR)
        sigma = max(1.0, width / float(part["width"]) * int(part["stride"]) / 2)
        values = cv2.GaussianBlur(values, (0, 0), sigma) - float(part.get("discount", 0.0))
        np.maximum(out, values, out=out)
    return out


def heatmap_jpeg(
    snapshot: bytes,
    heat: dict[str, dict[str, Any]] | None,
    box: tuple[float, float, float, float] | None,
    threshold: float,
) -> bytes:
    """The snapshot with the heat-map blended over it and ``box`` drawn (see the module docstring)."""
    import cv2  # only the console draws: the daemon's scoring never imports OpenCV

    picture = cv2.imdecode(np.frombuffer(snapshot, dtype=np.uint8), cv2.IMREAD_COLOR)
    if picture is None:
        raise MediaUnavailableError("the snapshot is not a readable JPEG")
    h, w = picture.shape[:2]
    if heat:
        values = combined_heat(heat, w, h)
        top = max(2.0 * threshold, 1e-6)
        colour = cv2.applyColorMap(np.clip(values / top * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        alpha = (np.clip(values / threshold, 0.0, 1.0) * 0.6)[..., None]
        picture = (picture * (1 - alpha) + colour * alpha).astype(np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        cv2.rectangle(
            picture, (int(x0 * w), int(y0 * h)), (int(x1 * w) - 1, int(y1 * h) - 1), _BOX_BGR, max(2, w // 320)
        )
    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:
        raise MediaUnavailableError("the heat-map could not be encoded")
    return bytes(data.tobytes())


def luma_jpeg(luma: np.ndarray) -> bytes:
    """A model-input luma frame (H, W) uint8 as a greyscale JPEG."""
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(luma, dtype=np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise MediaUnavailableError("the frame could not be encoded")
    return bytes(data.tobytes())


def clip_mp4(clip: Path, cache_dir: Path) -> Path:
    """The MP4 of a Matroska clip, made once per version of the clip (name, size, mtime) in ``cache_dir``."""
    st = clip.stat()
    out = cache_dir / f"{clip.parent.name}-{clip.stem}-{st.st_size}-{st.st_mtime_ns}.mp4"
    if out.is_file():
        return out
    tmp = out.with_suffix(f".tmp-{os.getpid()}.mp4")
    try:
        remux_mp4(clip, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def remux_mp4(src: Path, dst: Path) -> None:
    """Matroska → MP4, copying what MP4 and browsers take and encoding the rest (see the module docstring)."""
    try:
        inp = av.open(str(src), timeout=10.0)
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaUnavailableError(f"the clip cannot be read ({exc})") from exc
    with inp, av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        video = next((s for s in inp.streams.video), None)
        if video is None:
            raise MediaUnavailableError("the clip has no video")
        audio = next((s for s in inp.streams.audio), None)
        plan: dict[int, tuple[Any, bool]] = {}  # input stream index -> (output stream, copied)
        for stream, copyable in ((video, _COPY_VIDEO), (audio, _COPY_AUDIO)):
            if stream is None:
                continue
            if stream.codec_context.name in copyable:
                plan[stream.index] = (out.add_stream_from_template(stream), True)
            elif stream.type == "video":
                enc = out.add_stream("h264", rate=stream.average_rate or 25, options={"preset": "veryfast"})
                enc.width, enc.height, enc.pix_fmt = stream.codec_context.width, stream.codec_context.height, "yuv420p"
                enc.time_base = Fraction(1, 1000)
                plan[stream.index] = (enc, False)
            else:
                plan[stream.index] = (out.add_stream("aac", rate=48000), False)
        _mux(inp, out, plan)


def _mux(inp: Any, out: Any, plan: dict[int, tuple[Any, bool]]) -> None:
    streams = [s for s in inp.streams if s.index in plan]
    for packet in inp.demux(streams):
        target, copied = plan[packet.stream.index]
        if copied:
            if packet.dts is None:  # the demuxer's flush packet
                continue
            packet.stream = target
            out.mux(packet)
            continue
        for frame in packet.decode():
            if frame.pts is not None and frame.time_base is not None and target.type == "video":
                frame.pts = round(frame.pts * frame.time_base * 1000)  # the encoder's millisecond time base
                frame.time_base = Fraction(1, 1000)
            out.mux(target.encode(frame))
    for target, copied in plan.values():
        if not copied:
            out.mux(target.encode(None))
