"""Event snapshots and clips, on real parts: a bundled sample clip with known anomalies replayed through the
runner (real decoding, the default model, the real media writer) and the daemon; files checked by decoding them."""

from __future__ import annotations

import json
import os
import textwrap
import time

import av
import numpy as np
import pytest
from conftest import DEFAULT_MODEL, SAMPLES

from alerts.outbox import Outbox
from edge.config import load_config
from edge.daemon import Daemon
from edge.errors import ConfigError
from edge.health import Snapshot, render_metrics
from pipeline.engines.base import OrtEngineConfig
from pipeline.events import AnomalyEvent, EventType
from pipeline.frames import utc_now
from pipeline.media import CameraMedia, ClipSettings, MediaRecorder, MediaSettings, MediaStore, SnapshotSettings
from pipeline.models.package import ModelPackage
from pipeline.runner import Runner
from pipeline.scoring_model import PackageScorer
from pipeline.sources import SourceSpec

CLIP = SAMPLES / "test_1.mkv"
PRE, POST = 3.0, 1.0  # post-roll within the default hold_s (2 s): already buffered when `end` is decided
ON = CameraMedia(SnapshotSettings(enabled=True), ClipSettings(enabled=True, pre_roll_s=PRE, post_roll_s=POST))


@pytest.fixture(scope="module")
def scorer():
    return PackageScorer(ModelPackage.load(DEFAULT_MODEL), OrtEngineConfig())


def replay(scorer, media_dir, cameras, isolation="thread", **media):
    recorder = MediaRecorder(MediaSettings(path=media_dir, **media), cameras)
    events: list[AnomalyEvent] = []
    runner = Runner([SourceSpec("cam1", str(CLIP), isolation=isolation)], scorer, events.append, media=recorder)
    assert runner.open_sources() == {}
    runner.start()
    assert runner.wait(120)
    runner.join(timeout=60)
    return events, recorder


@pytest.fixture(scope="module", params=["thread", "process"])
def run(scorer, tmp_path_factory, request):
    """The sample replayed with snapshots and clips, its camera decoded on a thread or in a child process (whose
    packets reach the daemon's ring over the pipe): the same assertions hold for both."""
    media_dir = tmp_path_factory.mktemp("media")
    events, recorder = replay(scorer, media_dir, {"cam1": ON}, isolation=request.param)
    return events, recorder, media_dir


def source_packets():
    with av.open(str(CLIP)) as c:
        return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(c.streams.video[0]) if p.size]


def decode_rgb(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def source_frame(pts: float) -> np.ndarray:
    with av.open(str(CLIP)) as c:
        for f in c.decode(video=0):
            assert f.pts is not None and f.time_base is not None
            if f.pts * f.time_base >= pts - 1e-3:
                return f.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {pts}")


def box_edges(box, w, h, inset=1):
    """Pixel rows/columns just inside each edge of the box."""
    x0, y0, x1, y1 = round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)
    return [
        (slice(y0 + inset, y0 + inset + 1), slice(x0 + 2, x1 - 2)),
        (slice(y1 - 1 - inset, y1 - inset), slice(x0 + 2, x1 - 2)),
        (slice(y0 + 2, y1 - 2), slice(x0 + inset, x0 + inset + 1)),
        (slice(y0 + 2, y1 - 2), slice(x1 - 1 - inset, x1 - inset)),
    ]


def test_every_event_has_a_snapshot_of_its_peak_with_its_box_drawn(run):
    events, recorder, media_dir = run
    assert {e.type for e in events} == {EventType.NEW, EventType.UPDATE, EventType.END}
    assert any(e.box is not None for e in events)
    for ev in events:
        assert ev.snapshot == f"cam1/{ev.event_id}.jpg"  # one file per event, referenced by every message
    for ev in [e for e in events if e.type is EventType.END]:
        path = media_dir / ev.snapshot
        assert path.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
        rgb = decode_rgb(path)
        assert rgb.shape == (360, 640, 3)  # the source's resolution, not the model's
        source = source_frame(ev.peak_pts).astype(int)
        if ev.box is None:  # audio-only event: the plain frame
            assert np.abs(rgb.astype(int) - source).mean() < 4
            continue
        for rows, cols in box_edges(ev.box, 640, 360):
            drawn, before = rgb[rows, cols].astype(int), source[rows, cols]
            assert (drawn[..., 0] - drawn[..., 1]).mean() > 120, "a red line on the box's edge"
            assert (before[..., 0] - before[..., 1]).mean() < 60, "the frame itself is not red there"
        # away from the box the picture is the source's frame at the peak (JPEG noise only)
        mask = np.ones(rgb.shape[:2], bool)
        x0, y0, x1, y1 = (round(v * s) for v, s in zip(ev.box, (640, 360, 640, 360), strict=True))
        mask[max(0, y0 - 8) : y1 + 8, max(0, x0 - 8) : x1 + 8] = False
        assert np.abs(rgb.astype(int) - source)[mask].mean() < 4


def test_every_end_has_a_stream_copied_clip_covering_the_event_and_pre_roll(run):
    events, recorder, media_dir = run
    src = source_packets()
    ends = [e for e in events if e.type is EventType.END]
    assert len(ends) >= 3
    assert all(e.clip is None for e in events if e.type is not EventType.END)
    with av.open(str(CLIP)) as c:
        src_video = c.streams.video[0].codec_context
        src_params = (src_video.name, src_video.width, src_video.height, src_video.pix_fmt, src_video.extradata)
    for ev in ends:
        assert ev.clip == f"cam1/{ev.event_id}.mkv"
        with av.open(str(media_dir / ev.clip)) as c:
            v = c.streams.video[0].codec_context
            assert (v.name, v.width, v.height, v.pix_fmt, v.extradata) == src_params
            assert c.streams.audio, "the camera's audio is in the clip"
            packets = [
                (bytes(p), float(p.pts * p.time_base), p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size
            ]
        assert packets[0][2] and packets[0][1] == pytest.approx(0.0)  # starts decodable, at time 0
        # the very packets of the source, in order, from the keyframe at or before start - pre-roll
        first = next(i for i, (data, _) in enumerate(src) if data == packets[0][0])
        assert [d for d, _, _ in packets] == [d for d, _ in src[first : first + len(packets)]]
        clip_start = src[first][1]
        clip_end = src[first + len(packets) - 1][1]
        assert clip_start <= max(0.0, ev.start_pts - PRE) + 1e-3
        assert clip_start > ev.start_pts - PRE - 2.0  # no more than one GOP (2 s) earlier
        assert clip_end >= min(ev.end_pts + POST, src[-1][1]) - 0.05
        # every frame decodes
        with av.open(str(media_dir / ev.clip)) as c:
            assert sum(1 for _ in c.decode(video=0)) == len(packets)


def test_the_writer_wrote_everything_it_promised(run):
    events, recorder, media_dir = run
    refs = {e.snapshot for e in events} | {e.clip for e in events if e.clip}
    assert refs == set(recorder.store.files())
    assert recorder.stats.refused == recorder.stats.render_failures == recorder.stats.write_failures == 0
    assert not list(media_dir.rglob(".tmp-*"))


def test_retention_keeps_the_newest_files_within_the_limit(scorer, tmp_path):
    events, recorder = replay(scorer, tmp_path, {"cam1": ON}, max_total_mb=0.5)
    kept = recorder.store.files()
    sizes = sum((tmp_path / rel).stat().st_size for rel in kept)
    assert sizes <= 0.5e6
    assert recorder.store.deleted > 0
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert on_disk == sorted(kept)
    # the last event's clip is the newest file: it is kept
    assert [e for e in events if e.type is EventType.END][-1].clip in kept


def test_an_unwritable_media_directory_delivers_every_event_with_null_references(scorer, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the media directory's parent should be")  # fails even for root
    events, recorder = replay(scorer, blocker / "media", {"cam1": ON})
    # every anomaly of the clip still becomes an event that opens and ends (batching across threads may move an
    # event's edges by a frame between runs, so this is compared with the ground truth, not with another run)
    truth = json.loads(CLIP.with_suffix(".json").read_text())["anomalies"]
    ended = [(e.start_pts, e.end_pts) for e in events if e.type is EventType.END]
    for a in truth:
        assert any(s <= a["end"] + 0.5 and e >= a["start"] - 0.5 for s, e in ended), a
    assert {e.event_id for e in events if e.type is EventType.NEW} == {
        e.event_id for e in events if e.type is EventType.END
    }
    assert all(e.snapshot is None and e.clip is None for e in events)
    assert recorder.stats.refused > 0 and not recorder.store.healthy
    text = render_metrics(
        Snapshot(cameras={"cam1": {"media_buffer_bytes": recorder.ring("cam1").bytes}}, media=recorder.stats.as_dict())
    )
    assert f"lepton_media_refused_total {recorder.stats.refused}" in text
    assert 'lepton_media_buffer_bytes{camera="cam1"}' in text


def test_cameras_without_media_get_no_ring_and_no_references(scorer, tmp_path):
    recorder = MediaRecorder(MediaSettings(path=tmp_path), {"cam1": CameraMedia()})
    runner = Runner([SourceSpec("cam1", str(CLIP))], scorer, lambda ev: None, media=recorder)
    assert recorder.ring("cam1") is None
    assert runner._reader_for(runner.workers["cam1"].spec).packet_sink is None


def test_a_post_roll_longer_than_the_hold_is_waited_for_off_the_scoring_thread(tmp_path):
    cam = CameraMedia(clips=ClipSettings(enabled=True, pre_roll_s=1.0, post_roll_s=4.0))
    recorder = MediaRecorder(MediaSettings(path=tmp_path), {"cam1": cam})
    ring = recorder.ring("cam1")
    recorder.start()
    container = av.open(str(CLIP))
    ring.begin_session(list(container.streams))
    demux = (p for p in container.demux() if p.size)

    def feed_until(t: float) -> None:
        for p in demux:
            ring.add(p, p.stream.type, 0.0)
            if p.stream.type == "video" and p.pts * p.time_base >= t:
                return

    feed_until(7.0)
    now = utc_now()
    end = AnomalyEvent("ev1", 1, EventType.END, "cam1", now, 3.0, 5.0, now, 4.0, end_time=now, end_pts=5.0)
    started = time.monotonic()
    attached = recorder.attach(end)
    assert time.monotonic() - started < 0.05  # never waits
    assert attached.clip == "cam1/ev1.mkv"
    time.sleep(0.5)
    assert not (tmp_path / attached.clip).exists(), "post-roll to 9 s has not arrived: not written yet"
    feed_until(9.5)
    deadline = time.monotonic() + 10
    while not (tmp_path / attached.clip).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    recorder.close()
    container.close()
    with av.open(str(tmp_path / attached.clip)) as c:
        frames = [f.pts * f.time_base for f in c.decode(video=0)]
    assert frames[0] == 0 and frames[-1] >= 9.0 - 2.0  # from the keyframe at 2 s to the end of the post-roll


def test_store_retention_by_age_and_size_oldest_first(tmp_path):
    wall = [1000.0]
    store = MediaStore(tmp_path, max_total_bytes=250, max_age_s=100, wall=lambda: wall[0])
    assert store.open()
    for i in range(3):
        assert store.write_bytes(f"c/{i}.jpg", b"x" * 100)
        os.utime(tmp_path / f"c/{i}.jpg", (1000 + i, 1000 + i))
        store._files[f"c/{i}.jpg"] = (1000 + i, 100)
    store.enforce_retention()
    assert store.files() == ["c/1.jpg", "c/2.jpg"]  # over 250 bytes: the oldest went
    wall[0] = 1101.5
    store.enforce_retention()
    assert store.files() == ["c/2.jpg"]  # c/1 is 100.5 s old
    assert not (tmp_path / "c/0.jpg").exists() and not (tmp_path / "c/1.jpg").exists()


def test_store_failures_turn_it_unhealthy_until_a_probe_succeeds(tmp_path):
    clock = [0.0]
    root = tmp_path / "media"
    store = MediaStore(root, max_total_bytes=10**6, max_age_s=None, recheck_s=30, clock=lambda: clock[0])
    assert store.open()
    root.rename(tmp_path / "moved")
    root.write_text("now a file")  # every write below it fails, even for root
    assert not store.write_bytes("c/a.jpg", b"x")
    assert not store.healthy and store.write_failures == 1
    root.unlink()
    clock[0] = 10.0
    store.maybe_recover()
    assert not store.healthy  # not yet time to probe again
    clock[0] = 31.0
    store.maybe_recover()
    assert store.healthy and store.write_bytes("c/a.jpg", b"x")


def test_the_daemon_keeps_snapshots_and_clips_of_the_cameras_that_ask(tmp_path):
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text(
        textwrap.dedent(f"""\
        site: media-test
        outbox: {{path: {tmp_path / "outbox.db"}}}
        media: {{path: {tmp_path / "media"}, max_total_mb: 100, max_age_h: 24}}
        cameras:
          - id: with-media
            url: {CLIP}
            replay: fast
            snapshots: {{enabled: true, quality: 3}}
            clips: {{enabled: true, pre_roll_s: 2, post_roll_s: 1}}
          - id: without
            url: {CLIP}
            replay: fast
        """)
    )
    summary = Daemon(load_config(cfg_file)).run(install_signals=False)
    assert summary.media is not None and summary.media["clips_written"] >= 3
    with Outbox(tmp_path / "outbox.db", readonly=True) as outbox:
        messages = [row.message() for row in outbox.read(limit=10_000)]
    with_media = [m for m in messages if m.camera_id == "with-media"]
    assert with_media and all(m.snapshot for m in with_media)
    assert all(m.clip for m in with_media if m.type == "end")
    assert all(m.snapshot is None and m.clip is None for m in messages if m.camera_id == "without")
    for m in with_media:
        assert (tmp_path / "media" / m.snapshot).is_file()
        if m.clip:
            assert (tmp_path / "media" / m.clip).is_file()
    assert not (tmp_path / "media" / "without").exists()


def test_media_config_is_off_by_default_and_validated_with_lines(tmp_path):
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text(f"cameras:\n  - id: a\n    url: {CLIP}\n")
    cfg = load_config(cfg_file)
    assert cfg.camera_media() == {}
    assert str(cfg.media.path) == ".lepton/media"
    cfg_file.write_text(
        textwrap.dedent(f"""\
        media: {{max_total_mb: 0}}
        cameras:
          - id: a
            url: {CLIP}
            snapshots: {{enabled: true, colour: red}}
            clips: {{enabled: true, pre_roll_s: 600}}
        """)
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg_file)
    problems = "\n".join(err.value.problems)
    assert "line 1: media.max_total_mb" in problems
    assert "line 5: cameras.0.snapshots.colour: Extra inputs are not permitted" in problems
    assert "line 6: cameras.0.clips.pre_roll_s" in problems


class BrightModel:
    """Video is anomalous when the newest frame is bright; the worst region is the frame's centre."""

    width, height, fps, context = 64, 36, 5.0, 1
    audio_window_s, audio_hop_s, sample_rate = 1.0, 0.5, 16000
    has_video, has_audio, temporal_window, last_embeddings = True, False, 0, None
    temporal_every, last_gated = 1, np.zeros(0, dtype=bool)
    BOX = (0.25, 0.25, 0.75, 0.75)

    def score_video(self, stacks, masks=None):
        raw = stacks[:, -1].reshape(len(stacks), -1).mean(axis=1) / 255.0
        return raw, np.where(raw > 0.6, 5.0, 0.5), [self.BOX] * len(stacks)


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize(("encoder", "codec"), [("libx264", "h264"), ("libx265", "hevc")])
def test_live_rtsp_camera_gets_snapshots_and_stream_copied_clips(rtsp_server, tmp_path, encoder, codec):
    """Over RTSP the packets are Annex B H.264 / H.265 (many cameras send H.265) and timestamps come from RTP: the
    clip must still be a playable stream copy (same codec and size, every frame decodes) holding the pre-roll and
    the anomaly."""
    from fixtures.streams import write_stream

    from pipeline.aggregator import AggregatorSettings
    from pipeline.runner import RunnerSettings

    source = write_stream(tmp_path / "cam.mkv", seconds=6, size=(320, 180), bright=[(2.0, 3.5)], video_codec=encoder)
    server = rtsp_server({"cam": source})
    cam = CameraMedia(SnapshotSettings(enabled=True), ClipSettings(enabled=True, pre_roll_s=1.0, post_roll_s=0.5))
    recorder = MediaRecorder(MediaSettings(path=tmp_path / "media"), {"cam": cam})
    events: list[AnomalyEvent] = []
    settings = RunnerSettings(aggregator=AggregatorSettings(threshold=3.0, min_duration_s=0.4, hold_s=1.0), tamper=None)
    runner = Runner([SourceSpec("cam", server.url("cam"))], BrightModel(), events.append, settings, media=recorder)
    assert runner.open_sources() == {}, server.log()
    runner.start()
    deadline = time.monotonic() + 30
    while not any(e.type is EventType.END and e.reason.value == "quiet" for e in events):
        assert time.monotonic() < deadline, f"no event ended: {events} {server.log()}"
        time.sleep(0.2)
    runner.stop()
    runner.join(timeout=30)
    end = next(e for e in events if e.type is EventType.END and e.reason.value == "quiet")
    assert end.snapshot and end.clip
    rgb = decode_rgb(tmp_path / "media" / end.snapshot)
    assert rgb.shape == (180, 320, 3)
    for rows, cols in box_edges(BrightModel.BOX, 320, 180):
        drawn = rgb[rows, cols].astype(int)
        assert (drawn[..., 0] - drawn[..., 1]).mean() > 120
    with av.open(str(tmp_path / "media" / end.clip)) as c:
        v = c.streams.video[0].codec_context
        assert (v.name, v.width, v.height) == (codec, 320, 180)
        levels = [(float(f.pts * f.time_base), f.to_ndarray(format="gray").mean()) for f in c.decode(video=0)]
    assert levels[0][0] == pytest.approx(0.0, abs=0.05)
    bright = [t for t, level in levels if level > 150]
    assert bright, "the anomaly is in the clip"
    assert bright[0] >= 0.9, "with at least the 1 s pre-roll before it"
    duration = levels[-1][0] - levels[0][0]
    assert duration >= (end.end_pts - end.start_pts) + 1.0 - 0.1


def test_b_frames_a_snapshot_is_the_frame_at_its_pts_and_a_clip_decodes_whole(tmp_path):
    """Some cameras send B-frames (decode order differs from presentation order, dts < pts)."""
    from pipeline.media import PacketRing
    from pipeline.media.render import snapshot_jpeg, write_clip

    path = tmp_path / "bframes.mkv"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25, options={"bf": "2", "g": "25", "preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = 320, 180, "yuv420p"
        for i in range(100):  # frame i has level 2 * i: which frame a picture is shows in its level
            frame = av.VideoFrame.from_ndarray(np.full((180, 320, 3), 2 * i, np.uint8), format="rgb24")
            frame.pts = i
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
    ring = PacketRing("c", span_s=100, max_bytes=10**8)
    with av.open(str(path)) as c:
        ring.begin_session(list(c.streams))
        packets = [p for p in c.demux() if p.size]
        assert any(p.dts is not None and p.dts < p.pts for p in packets)
        for p in packets:
            ring.add(p, "video", 0.0)
    for t in (1.04, 1.48, 2.0, 3.96):
        (tmp_path / "s.jpg").write_bytes(snapshot_jpeg(ring.snapshot_packets(t), t, None))
        assert decode_rgb(tmp_path / "s.jpg").mean() == pytest.approx(2 * round(t * 25), abs=3), t
    clip = ring.clip_packets(1.5, 3.0)
    write_clip(clip, tmp_path / "c.mkv")
    with av.open(str(tmp_path / "c.mkv")) as c:
        levels = [f.to_ndarray(format="gray").mean() for f in c.decode(video=0)]
    assert len(levels) == len(clip)
    assert levels[0] == pytest.approx(50, abs=3)  # from the keyframe at 1.0 s
