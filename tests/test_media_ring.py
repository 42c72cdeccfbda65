"""The packet ring: bounded by seconds (from the scoring position) and bytes, always starting at a keyframe.

Packets are small fakes with the fields of ``av.Packet`` the ring reads; the codec parameters come from a real
file's streams (what a reader hands ``begin_session``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import pytest
from conftest import SAMPLES

from pipeline.media import PacketRing


@dataclass
class FakePacket:
    pts: int | None
    dts: int | None
    is_keyframe: bool
    payload: bytes
    duration: int = 40
    time_base: Fraction = Fraction(1, 1000)

    @property
    def size(self) -> int:
        return len(self.payload)

    def __bytes__(self) -> bytes:
        return self.payload


@pytest.fixture(scope="module")
def streams():
    container = av.open(str(SAMPLES / "test_1.mkv"))
    yield list(container.streams)
    container.close()


def feed(
    ring: PacketRing,
    seconds: float,
    *,
    gop: int = 25,
    fps: int = 25,
    size: int = 1000,
    start: float = 0.0,
    offset: float | None = 0.0,
) -> None:
    """Video at ``fps`` with a keyframe every ``gop`` frames, and an audio packet after every video one."""
    for i in range(int(seconds * fps)):
        t = round((start + i / fps) * 1000)
        ring.add(FakePacket(t, t, i % gop == 0, b"v" * size), "video", offset)
        ring.add(FakePacket(t, t, True, b"a" * 100, duration=40), "audio", offset)


def test_keeps_from_the_keyframe_at_or_before_the_span_behind_the_scoring_position(streams):
    ring = PacketRing("c", span_s=3.0, max_bytes=10**9)
    ring.begin_session(streams)
    ring.consumed = 8.5
    feed(ring, 10.0)
    packets = ring.packets()
    assert packets[0].kind == "video" and packets[0].keyframe
    # 8.5 - 3 = 5.5: the keyframe at 5.0 (keyframes every second) is the start; the one at 6.0 would be too late
    assert packets[0].pts == pytest.approx(5.0)
    assert ring.bytes == sum(len(p.data) for p in packets)


def test_nothing_is_evicted_by_time_before_the_scorer_got_there(streams):
    """A replay's capture runs ahead of scoring: what the scorer has not reached yet stays."""
    ring = PacketRing("c", span_s=1.0, max_bytes=10**9)
    ring.begin_session(streams)
    feed(ring, 10.0)
    assert ring.packets()[0].pts == 0.0


def test_the_byte_bound_is_hard_and_drops_whole_gops(streams):
    ring = PacketRing("c", span_s=1000.0, max_bytes=60_000)
    ring.begin_session(streams)
    ring.consumed = 100.0
    feed(ring, 20.0)  # 25 kB of video per second
    assert ring.bytes <= 60_000
    first = ring.packets()[0]
    assert first.kind == "video" and first.keyframe
    assert ring.early_evictions > 0
    assert ring.newest == pytest.approx(19.96)


def test_a_session_that_starts_between_keyframes_keeps_nothing_undecodable(streams):
    ring = PacketRing("c", span_s=10.0, max_bytes=10**9)
    ring.begin_session(streams)
    for i in range(1, 5):  # joined mid-GOP: no keyframe yet
        ring.add(FakePacket(i * 40, i * 40, False, b"x"), "video", 0.0)
    ring.add(FakePacket(200, 200, True, b"k"), "video", 0.0)
    ring.add(FakePacket(240, 240, False, b"p"), "video", 0.0)
    assert [p.data for p in ring.packets()] == [b"k", b"p"]


def test_packets_wait_for_the_time_line_offset_and_are_placed_with_it(streams):
    """At a session's start the source-time offset is known only once the reader mapped the first frame."""
    ring = PacketRing("c", span_s=10.0, max_bytes=10**9)
    ring.begin_session(streams)
    ring.add(FakePacket(0, 0, True, b"k"), "video", None)
    ring.add(FakePacket(40, 40, False, b"p"), "video", None)
    assert len(ring) == 0
    ring.add(FakePacket(80, 80, False, b"q"), "video", 100.0)
    assert [round(p.pts, 3) for p in ring.packets()] == [100.0, 100.04, 100.08]


def test_flush_packets_and_packets_without_time_are_ignored(streams):
    ring = PacketRing("c", span_s=10.0, max_bytes=10**9)
    ring.begin_session(streams)
    ring.add(FakePacket(None, None, True, b"k"), "video", 0.0)
    ring.add(FakePacket(0, 0, True, b""), "video", 0.0)
    assert len(ring) == 0


def test_snapshot_packets_run_from_the_keyframe_before_the_frame_to_the_frame(streams):
    ring = PacketRing("c", span_s=100.0, max_bytes=10**9)
    ring.begin_session(streams)
    feed(ring, 6.0)
    packets = ring.snapshot_packets(3.4)
    assert packets[0].keyframe and packets[0].pts == pytest.approx(3.0)
    assert packets[-1].pts == pytest.approx(3.4)
    assert {p.kind for p in packets} == {"video"}
    assert len(packets) == 11
    assert ring.snapshot_packets(-1.0) == []


def test_clip_packets_start_at_a_keyframe_and_end_with_the_window(streams):
    ring = PacketRing("c", span_s=100.0, max_bytes=10**9)
    ring.begin_session(streams)
    feed(ring, 10.0)
    packets = ring.clip_packets(2.5, 6.0)
    assert packets[0].kind == "video" and packets[0].keyframe and packets[0].pts == pytest.approx(2.0)
    assert max(p.dts for p in packets) == pytest.approx(6.0)
    assert min(p.pts for p in packets if p.kind == "audio") >= 2.0
    # a window that starts before the ring: from its first keyframe
    assert ring.clip_packets(-5.0, 1.0)[0].pts == 0.0


def test_a_clip_never_mixes_sessions(streams):
    """A reconnection brings new codec parameters: a clip is cut from the session at its end."""
    ring = PacketRing("c", span_s=100.0, max_bytes=10**9)
    ring.begin_session(streams)
    feed(ring, 3.0)
    ring.end_session()
    assert ring.covers(100.0)  # nothing more will come: a clip waiting for post-roll goes ahead
    ring.begin_session(streams)
    feed(ring, 3.0, start=5.0)
    packets = ring.clip_packets(0.0, 7.0)
    assert packets[0].pts == pytest.approx(5.0)
    assert len({id(p.session) for p in packets}) == 1
    assert not ring.covers(100.0)
