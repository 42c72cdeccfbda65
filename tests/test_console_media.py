"""What the console makes of stored media: clips as MP4 (copied where browsers take the codecs, encoded where
not), the heat-map over a snapshot, and the live luma frame."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from fixtures.streams import write_stream

from edge.web.media import (
    MediaUnavailableError,
    clip_mp4,
    combined_heat,
    heat_values,
    heatmap_jpeg,
    luma_jpeg,
    remux_mp4,
)


def packets(path: Path, kind: str) -> list[bytes]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0] if kind == "video" else c.streams.audio[0]
        return [bytes(p) for p in c.demux(stream) if p.size]


def codecs(path: Path) -> list[str]:
    with av.open(str(path)) as c:
        return [s.codec_context.name for s in c.streams]


def test_h264_and_aac_are_copied_packet_for_packet(tmp_path: Path) -> None:
    clip = write_stream(tmp_path / "c.mkv", seconds=2)
    mp4 = remux_mp4_to(clip, tmp_path / "c.mp4")
    assert codecs(mp4) == ["h264", "aac"]
    assert packets(mp4, "video") == packets(clip, "video")  # no re-encode
    assert packets(mp4, "audio") == packets(clip, "audio")
    with av.open(str(mp4)) as c:
        assert c.format.name.startswith("mov") and float(c.duration or 0) / 1e6 == pytest.approx(2.0, abs=0.15)


def test_codecs_a_browser_cannot_play_from_mp4_are_encoded(tmp_path: Path) -> None:
    clip = write_stream(tmp_path / "pcm.mkv", seconds=2, video_codec="mpeg4", audio_codec="pcm_s16le", audio_rate=16000)
    mp4 = remux_mp4_to(clip, tmp_path / "pcm.mp4")
    assert codecs(mp4) == ["h264", "aac"]
    with av.open(str(mp4)) as c:
        assert sum(1 for _ in c.decode(video=0)) == pytest.approx(50, abs=2)


def test_a_clip_is_made_once_per_version(tmp_path: Path) -> None:
    (tmp_path / "cam").mkdir()
    clip = write_stream(tmp_path / "cam" / "ev.mkv", seconds=1)
    cache = tmp_path / "cache"
    cache.mkdir()
    first = clip_mp4(clip, cache)
    assert clip_mp4(clip, cache) == first and [p.name for p in cache.iterdir()] == [first.name]
    (tmp_path / "bad.mkv").write_bytes(b"not a clip")
    with pytest.raises(MediaUnavailableError):
        clip_mp4(tmp_path / "bad.mkv", cache)
    assert [p.name for p in cache.iterdir()] == [first.name]  # no half-written file left


def remux_mp4_to(src: Path, dst: Path) -> Path:
    remux_mp4(src, dst)
    return dst


def test_heat_values_spread_each_patch_over_the_pixels_it_covers() -> None:
    heat = {"grid": [[0.0, 5.0], [2.0, 0.0]], "width": 24, "height": 16, "patch": 16, "stride": 8}
    values = heat_values(heat)
    assert values.shape == (16, 24)
    assert values[0, 20] == 5.0 and values[12, 4] == 2.0 and values[0, 0] == 0.0
    assert values[12, 12] == 5.0  # covered by both patches: the higher one


def test_the_heat_map_colours_where_patches_reach_the_threshold_and_boxes_the_worst() -> None:
    import cv2

    grey = np.full((90, 160, 3), 120, np.uint8)
    snapshot = cv2.imencode(".jpg", grey)[1].tobytes()
    video = {"grid": [[0.0] * 4, [0.0, 0.0, 0.0, 8.0]], "width": 32, "height": 18, "patch": 8, "stride": 8}
    temporal = {"grid": [[0.0, 0.0], [0.0, 3.5]], "width": 2, "height": 2, "patch": 1, "stride": 1, "discount": 1.0}
    heat = {"video": video, "temporal": temporal}
    out = cv2.imdecode(np.frombuffer(heatmap_jpeg(snapshot, heat, (0.0, 0.0, 0.1, 0.1), 3.0), np.uint8), 1)
    assert out is not None and out.shape == grey.shape
    hot = out[50:60, 130:150].astype(int)
    assert np.abs(hot - 120).max() > 60  # coloured where the patch scored 8
    assert np.abs(out[10:20, 60:80].astype(int) - 120).max() < 12  # the scene stays as it was elsewhere
    assert out[1, 1, 2] > 180 and out[1, 1, 0] < 100  # the box: red (BGR)
    with pytest.raises(MediaUnavailableError):
        heatmap_jpeg(b"not a jpeg", None, None, 3.0)


def test_the_heat_of_two_models_is_the_higher_of_each_less_its_discount() -> None:
    video = {"grid": [[4.0, 0.0]], "width": 2, "height": 1, "patch": 1, "stride": 1}
    temporal = {"grid": [[0.0, 4.0]], "width": 2, "height": 1, "patch": 1, "stride": 1, "discount": 1.0}
    values = combined_heat({"video": video, "temporal": temporal}, 200, 100)
    left, right = values[50, :60].max(), values[50, 140:].max()
    assert left > right > 0 and left - right == pytest.approx(1.0, abs=0.3)


def test_the_live_frame_is_the_models_luma_as_jpeg() -> None:
    import cv2

    luma = np.tile(np.arange(64, dtype=np.uint8), (36, 1))
    back = cv2.imdecode(np.frombuffer(luma_jpeg(luma), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert back is not None and back.shape == (36, 64) and np.abs(back.astype(int) - luma).max() < 8
