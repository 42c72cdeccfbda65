"""Decoding files and image sequences into the model's inputs, and the clear errors for bad sources."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from conftest import SAMPLES
from fixtures.media import make_clip, write_frames

from pipeline.errors import SourceConnectionError, SourceError, SourceFormatError, SourceNotFoundError
from pipeline.frames import AudioWindow, StreamEnd, VideoFrame, WallClock
from pipeline.sources import MediaReader, SourceSpec, read_media
from pipeline.sources.capture import BoundedBuffer, BufferPolicy


def split(items):
    video = [i for i in items if isinstance(i, VideoFrame)]
    audio = [i for i in items if isinstance(i, AudioWindow)]
    return video, audio


def test_clip_is_sampled_to_detection_fps_with_luma_and_audio_windows(tmp_path):
    clip = make_clip(tmp_path / "c.mkv", seconds=4, bright=[(2.0, 3.0)], loud=[(1.0, 2.0)])
    video, audio = split(list(read_media(str(clip), width=160, height=96, fps=5)))
    assert len(video) == 20
    assert [round(f.pts, 2) for f in video[:4]] == [0.0, 0.2, 0.4, 0.6]
    assert all(f.luma.shape == (96, 160) and f.luma.dtype == np.uint8 for f in video)
    assert [f.seq for f in video] == list(range(20))
    bright = [f.pts for f in video if f.luma.mean() > 150]
    assert min(bright) == pytest.approx(2.0) and max(bright) == pytest.approx(2.8)
    assert all(f.clock is WallClock.FILE for f in video)
    # 1 s windows every 0.5 s over ~4 s of audio
    assert 6 <= len(audio) <= 7
    assert all(w.samples.shape == (16000,) and w.samples.dtype == np.float32 for w in audio)
    loud = [w for w in audio if np.abs(w.samples).max() > 0.3]
    assert loud and all(0.0 <= w.pts <= 2.0 for w in loud)


def test_image_sequence_pattern_and_folder(tmp_path):
    folder = write_frames(tmp_path / "frames", 30, start=1)
    by_pattern, _ = split(list(read_media(str(folder / "%03d.jpg"), width=80, height=48, fps=5, input_fps=10)))
    by_folder, _ = split(list(read_media(str(folder), width=80, height=48, fps=5, input_fps=10)))
    assert len(by_pattern) == len(by_folder) == 15
    assert np.array_equal(by_pattern[3].luma, by_folder[3].luma)


def write_levels(folder, names_and_levels):
    """One grey 32x32 PNG per (name, level): the level tells which frame was read."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    for name, level in names_and_levels:
        frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), level, np.uint8), format="rgb24")
        with av.open(str(folder / name), "w", format="image2") as out:
            vs = out.add_stream("png", rate=1)
            vs.width, vs.height, vs.pix_fmt = 32, 32, "rgb24"
            for p in [*vs.encode(frame), *vs.encode()]:
                out.mux(p)
    return folder


def read_levels(url):
    video, _ = split(list(read_media(url, width=32, height=32, fps=10, input_fps=10, audio=False)))
    return [int(round(float(f.luma.mean()))) for f in video]


def test_frames_are_read_in_the_order_of_their_numbers_not_their_names(tmp_path):
    # img_1 ... img_12: by name, img_10 would come before img_2
    folder = write_levels(tmp_path / "a", [(f"img_{n}.png", 10 * n) for n in range(1, 13)])
    levels = read_levels(str(folder))
    assert levels == sorted(levels) and len(levels) == 12


def test_hidden_files_beside_the_frames_are_not_frames(tmp_path):
    # archives made on macOS carry a ._NAME companion per file (not an image), folders a .DS_Store
    # (unpadded numbers: only a numbered reading gets 2 before 10, so a companion must not spoil the numbering)
    folder = write_levels(tmp_path / "h", [(f"{n}.png", 10 * n) for n in range(1, 13)])
    (folder / "._1.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / ".DS_Store").write_bytes(b"Bud1")
    assert read_levels(str(folder)) == [10 * n for n in range(1, 13)]


def test_a_gap_in_zero_padded_numbers_loses_no_frame(tmp_path):
    folder = write_levels(tmp_path / "b", [(f"f_{n:03d}.png", 20 * n) for n in (1, 2, 4, 5, 9)])
    levels = read_levels(str(folder))  # image2's numbered sequence would stop at the gap after 2
    assert len(levels) == 5 and levels == sorted(levels)


def test_unpadded_numbers_with_a_gap_are_refused_clearly(tmp_path):
    folder = write_levels(tmp_path / "c", [(f"{n}.png", 20 * n) for n in (1, 2, 3, 10, 11)])
    with pytest.raises(SourceFormatError, match="gap after 3"):
        read_levels(str(folder))


def test_a_pattern_whose_prefix_has_digits_starts_at_its_first_frame(tmp_path):
    folder = write_levels(tmp_path / "d", [(f"cam2_{n:04d}.png", 20 * (n - 4)) for n in range(5, 9)])
    assert len(read_levels(str(folder / "cam2_%04d.png"))) == 4


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceNotFoundError, match="no such file"):
        list(read_media(str(tmp_path / "nope.mkv"), width=32, height=32, fps=5))


def test_file_that_is_not_media(tmp_path):
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(SourceFormatError):
        list(read_media(str(junk), width=32, height=32, fps=5))


def test_rtsp_nothing_listening_fails_fast_without_credentials(unused_tcp_port):
    spec = SourceSpec("cam", f"rtsp://admin:s3cret@127.0.0.1:{unused_tcp_port}/x", open_timeout_s=2)
    reader = MediaReader(spec, width=32, height=32, fps=5)
    with pytest.raises(SourceConnectionError) as err:
        reader.open()
    assert "s3cret" not in str(err.value) and "***@" in str(err.value)


def test_rtsp_port_that_accepts_and_never_answers_fails_within_the_open_timeout():
    """The open timeout bounds the whole RTSP handshake, not each of its requests."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        spec = SourceSpec("cam", f"rtsp://127.0.0.1:{port}/x", open_timeout_s=1.0, read_timeout_s=30.0)
        started = time.monotonic()
        with pytest.raises(SourceError):
            MediaReader(spec, width=32, height=32, fps=5).open()
        assert time.monotonic() - started < 1.0 + 2.0


def test_drop_oldest_buffer_counts_drops_and_keeps_stream_end() -> None:
    ready, stop = threading.Event(), threading.Event()
    buf = BoundedBuffer(3, BufferPolicy.DROP_OLDEST, ready)
    end = StreamEnd("c", 0.0, 0, None, lost=True)  # type: ignore[arg-type]
    buf.put(end, stop)
    for i in range(5):
        buf.put(i, stop)  # type: ignore[arg-type]
    assert buf.dropped == 3
    assert [buf.get_nowait() for _ in range(3)] == [end, 3, 4]


def test_wait_buffer_blocks_until_stopped() -> None:
    ready, stop = threading.Event(), threading.Event()
    buf = BoundedBuffer(1, BufferPolicy.WAIT, ready)
    assert buf.put(1, stop)  # type: ignore[arg-type]
    stop.set()
    assert buf.put(2, stop) is False  # type: ignore[arg-type]
    assert buf.dropped == 0


def test_source_spec_rejects_impossible_timeouts_and_backoff():
    with pytest.raises(ValueError, match="stall_timeout_s"):
        SourceSpec("cam", "rtsp://h/x", stall_timeout_s=0)
    with pytest.raises(ValueError, match="backoff_max_s"):
        SourceSpec("cam", "rtsp://h/x", backoff_initial_s=5, backoff_max_s=1)
    assert SourceSpec("cam", "rtsp://h/x").stall_timeout_s > 0


def test_the_video_decoder_threads_are_the_same_on_every_machine():
    """Frame threads delay a decoder's output by one frame each, and FFmpeg's own choice is cores + 1 (up to 16): on a
    16-core host a camera's audio windows then overtook the video frames before them and a replay decided other
    events than on 2 cores. The reader sets the count itself, so the delay (2 frames) is the same everywhere."""
    from pipeline.sources.reader import DECODER_THREADS

    reader = MediaReader(SourceSpec("cam", str(SAMPLES / "normal_eval.mkv")), width=160, height=96, fps=5)
    reader.open()
    try:
        ctx = reader.container.streams.video[0].codec_context
        assert ctx.thread_count == DECODER_THREADS == 3  # as asked (0 would be FFmpeg's own choice)...
        assert any(isinstance(f, VideoFrame) for _, f in zip(range(10), reader.items(), strict=False))
        assert ctx.thread_count == DECODER_THREADS  # ...and as decoding
    finally:
        reader.close()


def test_deblocking_key_frames_only_changes_the_model_input_by_a_fraction_of_a_level():
    """skip_loop_filter=nokey (the default) takes effect, and what the model sees stays the same picture."""
    clip = str(SAMPLES / "normal_eval.mkv")  # H.264, a key frame every 2 s: most frames are P-frames

    def luma(mode: str) -> np.ndarray:
        reader = MediaReader(SourceSpec("cam", clip, skip_loop_filter=mode), width=256, height=144, fps=5, audio=False)
        reader.open()
        try:
            return np.stack([f.luma for f in reader.items() if isinstance(f, VideoFrame)][:40]).astype(np.float32)
        finally:
            reader.close()

    full, fast = luma("none"), luma("nokey")
    assert full.shape == fast.shape == (40, 144, 256)
    diff = np.abs(full - fast)
    assert diff.max() > 0  # deblocking really was skipped
    assert diff.mean() < 1.0  # of 255 levels
    np.testing.assert_array_equal(diff[0], 0)  # the key frame is decoded exactly
    with pytest.raises(ValueError, match="skip_loop_filter"):
        SourceSpec("cam", clip, skip_loop_filter="all")


def test_source_spec_repr_hides_credentials():
    text = repr(SourceSpec("cam", "rtsp://admin:s3cret@10.0.0.5/stream"))
    assert "s3cret" not in text and "rtsp://***@10.0.0.5/stream" in text and "stall_timeout_s=10.0" in text
