"""The aggregator turns exact score sequences into exact event sequences (stream time only, no sleeping)."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone

import pytest

from pipeline.aggregator import AggregatorSettings, CameraAggregator
from pipeline.events import EndReason, EventType
from pipeline.frames import Modality, Score

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def score(pts: float, value: float, modality: Modality = Modality.VIDEO, cam: str = "cam1") -> Score:
    return Score(cam, modality, pts, int(pts * 1e9), T0 + timedelta(seconds=pts), value * 0.1, value)


def run(agg: CameraAggregator, seq: list[tuple[float, float]], modality: Modality = Modality.VIDEO):
    out = []
    for pts, value in seq:
        out.extend(agg.push(score(pts, value, modality)))
    return out


def make(**kw) -> CameraAggregator:
    ids = (f"ev{i}" for i in itertools.count())
    return CameraAggregator("cam1", AggregatorSettings(**kw), new_id=lambda: next(ids))


def frames(start: float, stop: float, value: float, fps: float = 5.0) -> list[tuple[float, float]]:
    n = int(round((stop - start) * fps))
    return [(round(start + i / fps, 6), value) for i in range(n)]


def test_short_spike_below_min_duration_opens_nothing():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=1.0)
    events = run(agg, frames(0, 2, 0.5) + [(2.0, 5.0), (2.2, 5.0)] + frames(2.4, 6, 0.5))
    assert events == []


def test_run_above_threshold_opens_then_ends_after_hold():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=1.0)
    seq = frames(0, 2, 0.5) + frames(2, 3, 4.0) + [(3.0, 6.0)] + frames(3.2, 4, 4.0) + frames(4, 6, 0.5)
    events = run(agg, seq)
    assert [e.type for e in events] == [EventType.NEW, EventType.END]
    new, end = events
    assert new.event_id == end.event_id == "ev0"
    assert (new.seq, end.seq) == (0, 1)
    assert new.start_pts == pytest.approx(2.0)
    assert new.peak_score < end.peak_score == 6.0  # the peak came after the event opened
    assert end.peak_pts == pytest.approx(3.0)
    assert end.end_pts == pytest.approx(4.0)  # the first quiet frame, not when the hold ran out
    assert end.reason is EndReason.QUIET
    assert end.modalities["video"].peak == 6.0


def test_dips_shorter_than_hold_keep_one_event():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=1.0)
    seq = frames(0, 1, 4.0) + frames(1, 1.6, 0.5) + frames(1.6, 2.6, 4.0) + frames(2.6, 5, 0.5)
    events = run(agg, seq)
    assert [e.type for e in events] == [EventType.NEW, EventType.END]


def test_audio_window_held_until_next_window_of_its_modality():
    # audio windows every 0.5 s: one loud window holds "above" for its hop, enough for min_duration 0.4
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=1.0)
    seq = [(0.0, 0.2), (0.5, 0.2), (1.0, 5.0), (1.5, 0.2), (2.0, 0.2), (2.5, 0.2), (3.0, 0.2)]
    events = run(agg, seq, Modality.AUDIO)
    assert [e.type for e in events] == [EventType.NEW, EventType.END]
    assert events[0].start_pts == 1.0
    assert events[1].end_pts == 1.5
    assert set(events[0].modalities) == {"audio"}


def test_fusion_takes_max_of_fresh_modalities_and_ignores_stale_ones():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=1.0, stale_s=1.0)
    out = agg.push(score(0.0, 9.0, Modality.AUDIO))
    # video keeps coming, the audio stream went silent (no more windows): the loud window goes stale
    out += run(agg, frames(0.2, 3.0, 0.5))
    assert [e.type for e in out] == [EventType.NEW, EventType.END]
    assert out[0].modalities.keys() == {"audio"}


def test_both_modalities_recorded():
    agg = make(threshold=3.0, min_duration_s=0.2, hold_s=0.5)
    out = []
    for pts, v in frames(0, 2, 4.0):
        out += agg.push(score(pts, v, Modality.VIDEO))
        if abs(pts * 2 - round(pts * 2)) < 1e-9:
            out += agg.push(score(pts, 7.0, Modality.AUDIO))
    out += run(agg, frames(2, 4, 0.1))
    out += run(agg, frames(2, 4, 0.1), Modality.AUDIO)
    end = [e for e in out if e.type is EventType.END][0]
    assert set(end.modalities) == {"video", "audio"}
    assert end.peak_score == 7.0


@pytest.mark.parametrize("reason", [EndReason.STREAM_LOST, EndReason.SHUTDOWN, EndReason.EOF])
def test_stream_end_closes_open_event_with_reason(reason):
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=5.0)
    events = run(agg, frames(0, 1, 4.0))
    assert [e.type for e in events] == [EventType.NEW]
    end = agg.end_stream(1.0, T0 + timedelta(seconds=1), reason)
    assert [e.type for e in end] == [EventType.END]
    assert end[0].reason is reason and end[0].event_id == events[0].event_id
    assert agg.end_stream(2.0, T0, reason) == []


def test_watermark_never_goes_backwards():
    agg = make()
    agg.push(score(5.0, 0.1))
    agg.push(score(3.0, 0.1, Modality.AUDIO))
    assert agg.watermark == 5.0


def test_property_every_new_has_exactly_one_end_and_seq_increases():
    rng = random.Random(7)
    for _ in range(200):
        agg = make(threshold=3.0, min_duration_s=rng.choice([0, 0.2, 0.5]), hold_s=rng.choice([0.2, 1, 3]))
        events = []
        pts = 0.0
        for _ in range(rng.randint(1, 200)):
            pts += rng.choice([0.1, 0.2, 0.5])
            modality = rng.choice([Modality.VIDEO, Modality.AUDIO])
            events += agg.push(score(pts, rng.choice([0.0, 1.0, 3.0, 5.0]), modality))
        events += agg.end_stream(pts + 1, T0, EndReason.SHUTDOWN)
        open_ids: dict[str, int] = {}
        for e in events:
            if e.type is EventType.NEW:
                assert e.event_id not in open_ids and e.seq == 0
                assert not open_ids, "at most one open event per camera"
                open_ids[e.event_id] = e.seq
            else:
                assert e.seq > open_ids.pop(e.event_id)
                assert e.end_pts is not None and e.end_pts >= e.start_pts
        assert not open_ids
