"""The aggregator turns exact score sequences into exact event sequences (stream time only, no sleeping).

Scores are pushed one at a time; ``trace`` records the pts of the push that decided each message, so the tests
state *when* each message is decided as well as what it says. Between scores the signal holds its last value.
"""

from __future__ import annotations

import itertools
import math
import random
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from pipeline.aggregator import AggregatorSettings, CameraAggregator
from pipeline.events import AnomalyEvent, EndReason, EventType, UpdateReason
from pipeline.frames import Modality, Score

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NEW, UPDATE, END = EventType.NEW, EventType.UPDATE, EventType.END
VIDEO, AUDIO = Modality.VIDEO, Modality.AUDIO


def score(pts: float, value: float, modality: Modality | str = VIDEO, cam: str = "cam1") -> Score:
    return Score(cam, modality, pts, int(pts * 1e9), T0 + timedelta(seconds=pts), value * 0.1, value)  # type: ignore[arg-type]


def make(**kw) -> CameraAggregator:
    """An aggregator for exact score sequences: no smoothing and no updates unless asked for."""
    ids = (f"ev{i}" for i in itertools.count())
    kw.setdefault("smoothing_s", 0.0)
    kw.setdefault("update_peak_margin", None)
    kw.setdefault("update_on_modality", False)
    kw.setdefault("update_interval_s", None)
    return CameraAggregator("cam1", AggregatorSettings(**kw), new_id=lambda: next(ids))


def frames(start: float, stop: float, value: float, fps: float = 5.0) -> list[tuple[float, float]]:
    n = int(round((stop - start) * fps))
    return [(round(start + i / fps, 6), value) for i in range(n)]


def push_all(agg: CameraAggregator, seq, modality: Modality | str = VIDEO) -> list[tuple[float, AnomalyEvent]]:
    """Push (pts, value) pairs; return (pts of the deciding push, message) pairs."""
    out: list[tuple[float, AnomalyEvent]] = []
    for pts, value in seq:
        out.extend((pts, e) for e in agg.push(score(pts, value, modality)))
    return out


def run(agg: CameraAggregator, seq, modality: Modality | str = VIDEO) -> list[AnomalyEvent]:
    return [e for _, e in push_all(agg, seq, modality)]


def trace(decided: list[tuple[float, AnomalyEvent]]) -> list[tuple]:
    """Compact, exact view: (decided at, type, id, seq, start, end, reason or update reason)."""
    rows = []
    for at, e in decided:
        why = e.reason.value if e.reason else e.update_reason.value if e.update_reason else None
        end = round(e.end_pts, 6) if e.end_pts is not None else None
        rows.append((round(at, 6), e.type.value, e.event_id, e.seq, round(e.start_pts, 6), end, why))
    return rows


# -- hysteresis, min duration, hold --------------------------------------------------------------------------


def test_short_spike_below_min_duration_opens_nothing():
    # two frames at 5 fps hold the value for 0.4 s: shorter than 0.5
    agg = make(threshold=3.0, min_duration_s=0.5, hold_s=1.0)
    assert run(agg, frames(0, 2, 0.5) + [(2.0, 5.0), (2.2, 5.0)] + frames(2.4, 6, 0.5)) == []


def test_a_spike_lasting_exactly_min_duration_opens():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=1.0)
    got = trace(push_all(agg, frames(0, 2, 0.5) + [(2.0, 5.0), (2.2, 5.0)] + frames(2.4, 6, 0.5)))
    assert got == [(2.4, "new", "ev0", 0, 2.0, None, None), (3.4, "end", "ev0", 1, 2.0, 2.4, "quiet")]


def test_run_above_threshold_opens_then_updates_its_peak_then_ends_after_hold():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=1.0, update_peak_margin=1.0)
    seq = frames(0, 2, 0.5) + frames(2, 3, 4.0) + [(3.0, 6.0)] + frames(3.2, 4, 4.0) + frames(4, 6, 0.5)
    decided = push_all(agg, seq)
    assert trace(decided) == [
        (2.4, "new", "ev0", 0, 2.0, None, None),
        (3.0, "update", "ev0", 1, 2.0, None, "peak"),
        (5.0, "end", "ev0", 2, 2.0, 4.0, "quiet"),  # ends at the first quiet frame, decided after the hold
    ]
    new, update, end = (e for _, e in decided)
    assert (new.peak_score, new.peak_pts) == (4.0, 2.0)
    assert (update.peak_score, update.peak_pts) == (6.0, 3.0)
    assert end.peak_score == 6.0 and end.modalities["video"].peak == 6.0
    assert end.end_time == T0 + timedelta(seconds=4.0)
    assert new.decided_from_monotonic_ns == int(2.4e9)


def test_dips_shorter_than_hold_keep_one_event():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=1.0)
    seq = frames(0, 1, 4.0) + frames(1, 1.6, 0.5) + frames(1.6, 2.6, 4.0) + frames(2.6, 5, 0.5)
    assert trace(push_all(agg, seq)) == [
        (0.4, "new", "ev0", 0, 0.0, None, None),
        (3.6, "end", "ev0", 1, 0.0, 2.6, "quiet"),
    ]


def test_enter_and_exit_thresholds():
    # enter at 4, stay open down to 2: 3.0 neither opens an event nor ends one
    agg = make(enter_threshold=4.0, exit_threshold=2.0, min_duration_s=0.4, hold_s=0.6)
    seq = frames(0, 1, 3.0) + frames(1, 2, 5.0) + frames(2, 4, 3.0) + frames(4, 5, 1.0)
    assert trace(push_all(agg, seq)) == [
        (1.4, "new", "ev0", 0, 1.0, None, None),
        (4.6, "end", "ev0", 1, 1.0, 4.0, "quiet"),
    ]


def test_threshold_is_the_shorthand_for_both_and_overridable():
    s = AggregatorSettings(threshold=2.5)
    assert (s.enter, s.exit) == (2.5, 2.5)
    s = AggregatorSettings(threshold=2.5, exit_threshold=1.5)
    assert (s.enter, s.exit) == (2.5, 1.5)
    s = AggregatorSettings(enter_threshold=5.0)
    assert (s.enter, s.exit) == (5.0, 3.0)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"enter_threshold": 2.0, "exit_threshold": 3.0}, "must not exceed"),
        ({"fusion": {"type": "any_of", "modalities": ["vidoe"]}}, "unknown modality 'vidoe'"),
        ({"fusion": {"type": "weighted", "weights": {"video": 0}}}, "at least one weight"),
        ({"fusion": {"type": "median"}}, "does not match any of the expected tags"),
        ({"fusion": {"type": "max", "discount": {"temporl": 1}}}, "unknown modality 'temporl'"),
        ({"fusion": {"type": "max", "discount": {"temporal": -1}}}, "greater than or equal to 0"),
        ({"min_duration_s": 5, "max_duration_s": 2}, "max_duration_s must be longer"),
        ({"smoothing_by_lead": {"audoi": 0}}, "unknown modality 'audoi'"),
        ({"smoothing_by_lead": {"audio": -1}}, "greater than or equal to 0"),
        ({"update_interval_s": 0}, "greater than 0"),
        ({"hold": 2}, "Extra inputs"),
    ],
)
def test_invalid_settings_say_what_is_wrong(fields, problem):
    with pytest.raises(ValidationError, match=problem):
        AggregatorSettings(**fields)


def test_fusion_type_name_is_a_shorthand():
    assert AggregatorSettings(fusion="max").fusion.type == "max"
    s = AggregatorSettings(fusion={"type": "all_of", "modalities": ["audio", "video", "audio"]})
    assert s.fusion.modalities == ["audio", "video"]


# -- modalities and fusion -----------------------------------------------------------------------------------


def test_audio_window_held_until_next_window_of_its_modality():
    # audio windows every 0.5 s: one loud window holds "above" for its hop, enough for min_duration 0.4
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=1.0)
    seq = [(0.0, 0.2), (0.5, 0.2), (1.0, 5.0), (1.5, 0.2), (2.0, 0.2), (2.5, 0.2), (3.0, 0.2)]
    decided = push_all(agg, seq, AUDIO)
    assert trace(decided) == [
        (1.5, "new", "ev0", 0, 1.0, None, None),
        (2.5, "end", "ev0", 1, 1.0, 1.5, "quiet"),
    ]
    assert set(decided[0][1].modalities) == {"audio"}


def test_fusion_takes_max_of_fresh_modalities_and_ignores_stale_ones():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=1.0, stale_s=1.0)
    out = agg.push(score(0.0, 9.0, AUDIO))
    # video keeps coming, the audio stream went silent (no more windows): the loud window goes stale after 1 s
    decided = push_all(agg, frames(0.2, 3.0, 0.5))
    assert out == []
    assert trace(decided) == [
        (0.4, "new", "ev0", 0, 0.0, None, None),
        (2.2, "end", "ev0", 1, 0.0, 1.2, "quiet"),
    ]
    assert decided[0][1].modalities.keys() == {"audio"}


def test_a_joining_modality_sends_an_update_with_both():
    agg = make(threshold=3.0, min_duration_s=0.2, hold_s=0.5, update_on_modality=True)
    decided = []
    for pts, v in frames(0, 2, 4.0) + frames(2, 3, 0.1):
        decided += [(pts, e) for e in agg.push(score(pts, v, VIDEO))]
        if pts in (1.0, 2.0):  # audio windows: loud, then quiet
            decided += [(pts, e) for e in agg.push(score(pts, 7.0 if pts == 1.0 else 0.1, AUDIO))]
    assert trace(decided) == [
        (0.2, "new", "ev0", 0, 0.0, None, None),
        (1.0, "update", "ev0", 1, 0.0, None, "modality"),
        (2.6, "end", "ev0", 2, 0.0, 2.0, "quiet"),
    ]
    new, update, end = (e for _, e in decided)
    assert set(new.modalities) == {"video"}
    assert set(update.modalities) == set(end.modalities) == {"video", "audio"}
    assert end.peak_score == 7.0 and end.modalities["audio"].peak_pts == 1.0


def test_weighted_fusion_is_a_mean_renormalised_over_fresh_modalities():
    fusion = {"type": "weighted", "weights": {"video": 1.0, "audio": 3.0}}
    agg = make(threshold=3.0, min_duration_s=0.0, hold_s=0.0, fusion=fusion, stale_s=0.5)
    assert agg.push(score(0.0, 2.0, AUDIO)) == []  # alone: 2.0
    # with video: (8 * 1 + 2 * 3) / 4 = 3.5, and min_duration 0 opens at once
    [new] = agg.push(score(0.0, 8.0, VIDEO))
    assert new.type is NEW and new.peak_score == pytest.approx(3.5)
    assert set(new.modalities) == {"video"}  # only video reached the threshold by itself
    # audio goes stale: video alone (8.0) carries it; then video drops and the event ends at once (hold 0)
    assert agg.push(score(0.8, 8.0, VIDEO)) == []
    [end] = agg.push(score(1.0, 1.0, VIDEO))
    assert end.type is END and end.end_pts == 1.0 and end.peak_score == 8.0


def test_weighted_fusion_ignores_modalities_without_weight():
    agg = make(threshold=3.0, min_duration_s=0.0, fusion={"type": "weighted", "weights": {"audio": 1.0}})
    assert run(agg, frames(0, 2, 9.0), VIDEO) == []


def test_max_fusion_counts_the_temporal_score_when_it_is_10x_rarer_unless_configured():
    seq = frames(0, 2, 3.5) + frames(2, 3, 0.0)  # 1 in 3000 normal windows: 2.5 once discounted
    assert AggregatorSettings().fusion.discount == {"temporal": 1.0}
    assert run(make(threshold=3.0, min_duration_s=0.4), seq, "temporal") == []
    decided = run(make(threshold=3.0, min_duration_s=0.4, hold_s=0.4), frames(0, 2, 4.5), "temporal")
    assert [e.type for e in decided] == [NEW] and set(decided[0].modalities) == {"temporal"}
    assert decided[0].peak_score == pytest.approx(3.5)  # the fused score; the modality keeps its own peak
    assert decided[0].modalities["temporal"].peak == pytest.approx(4.5)
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=0.4, fusion={"type": "max", "discount": {}})
    assert [e.type for e in run(agg, seq, "temporal")] == [NEW, END]

    # a modality is named in an event when its counted score reaches the threshold
    agg = make(threshold=3.0, min_duration_s=0.0, hold_s=0.4)
    decided = []
    for pts, v in frames(0, 1, 5.0):
        decided += agg.push(score(pts, v, VIDEO)) + agg.push(score(pts, 3.5, "temporal"))
    assert set(decided[0].modalities) == {"video"}


def test_any_of_fusion_listens_to_its_set_only():
    agg = make(
        threshold=3.0,
        min_duration_s=0.4,
        hold_s=0.4,
        fusion={"type": "any_of", "modalities": ["video", "audio"]},
    )
    assert run(agg, frames(0, 2, 9.0), "tampering") == []
    decided = push_all(agg, frames(2, 3, 5.0) + frames(3, 4, 0.0), AUDIO)
    assert trace(decided) == [
        (2.4, "new", "ev0", 0, 2.0, None, None),
        (3.4, "end", "ev0", 1, 2.0, 3.0, "quiet"),
    ]
    assert set(decided[0][1].modalities) == {"audio"}  # the tampering scores were not part of it


def test_all_of_fusion_needs_every_modality_fresh_and_anomalous():
    agg = make(
        threshold=3.0,
        min_duration_s=0.0,
        hold_s=0.0,
        stale_s=1.0,
        fusion={"type": "all_of", "modalities": ["video", "audio"]},
    )
    assert run(agg, frames(0, 1, 9.0), VIDEO) == []  # no audio yet
    assert agg.push(score(1.0, 2.0, AUDIO)) == []  # audio not anomalous
    [new] = agg.push(score(1.2, 5.0, AUDIO))  # video 9.0 (at 0.8, still fresh) and audio 5.0: min 5.0
    assert new.peak_score == 5.0 and set(new.modalities) == {"audio", "video"}
    [end] = agg.push(score(2.0, 5.0, AUDIO))  # video went stale (last at 0.8): all_of no longer holds
    assert end.type is END and end.end_pts == 2.0


# -- smoothing -----------------------------------------------------------------------------------------------


def test_smoothing_rides_out_a_single_frame_spike_but_follows_a_sustained_anomaly():
    # tau 0.5 s at 5 fps: each frame moves the average 1 - exp(-0.4) = 33 % of the way
    agg = make(threshold=3.0, min_duration_s=0.0, hold_s=0.0, smoothing_s=0.5)
    assert run(agg, frames(0, 2, 0.0) + [(2.0, 8.0)] + frames(2.2, 4, 0.0)) == []  # 8 * 0.33 = 2.6 < 3
    decided = push_all(agg, frames(4, 6, 8.0) + frames(6, 8, 0.0))
    # 2.64, 4.41, 5.60 ...: above 3 at the 2nd frame; after the drop 8 -> 5.36, 3.59, 2.41: below at the 3rd
    assert trace(decided) == [
        (4.2, "new", "ev0", 0, 4.2, None, None),
        (6.4, "end", "ev0", 1, 4.2, 6.4, "quiet"),
    ]


def test_by_default_a_lone_frame_is_lowered_and_a_strong_score_counts_within_its_frame():
    default = AggregatorSettings()  # the daemon's and edge eval's smoothing unless configured
    agg = make(smoothing_s=default.smoothing_s, threshold=3.0, min_duration_s=0.0, hold_s=0.0)
    levels = []
    for pts, value in frames(0, 2, 1.0) + [(2.0, 4.0)] + frames(2.2, 3, 1.0) + frames(3, 4, 10.0):
        agg.push(score(pts, value))
        levels.append((pts, agg.level))
    lone = dict(levels)[2.0]
    assert 1.0 < lone < 3.0  # a normal scene's lone frame at 4 among frames at 1 stays below the threshold
    assert dict(levels)[3.0] >= 3.0  # a score of 10 reaches it at its first frame
    assert default.smoothing_s > 0


def test_by_default_a_lone_frame_at_10_opens_nothing_and_a_short_run_of_them_does():
    # smoothed, a lone 10 among frames at 1 holds the level above 3 for two frames (4.5, 3.1): the default minimum
    # duration needs longer, so a shaking camera's odd frame stays quiet; four frames of a real object open an event
    default = AggregatorSettings()
    agg = make(smoothing_s=default.smoothing_s, min_duration_s=default.min_duration_s)
    assert run(agg, frames(0, 2, 1.0) + [(2.0, 10.0)] + frames(2.2, 5, 1.0)) == []
    decided = run(agg, frames(5, 5.8, 10.0) + frames(5.8, 9, 1.0))
    assert [e.type for e in decided] == [NEW, END] and decided[0].start_pts == pytest.approx(5.0)


def test_by_default_a_short_sound_opens_an_event_where_the_same_run_of_video_frames_does_not():
    # 0.6 s at 5 (three scores 0.2 s apart) among zeros. An audio window's score is already a mean over its newest
    # 0.4 s: unsmoothed while audio leads, it is hot for 0.6 s and opens an event. As video frames the default
    # smoothing gives 1.97, 3.16, 3.88, 2.35: hot for 0.4 s, under the minimum duration.
    default = AggregatorSettings()
    burst = frames(0, 1, 0.0) + frames(1, 1.6, 5.0) + frames(1.6, 4, 0.0)

    def fresh(**kw):
        return make(smoothing_s=default.smoothing_s, min_duration_s=default.min_duration_s, hold_s=0.0, **kw)

    assert run(fresh(), burst, VIDEO) == []
    decided = run(fresh(), burst, AUDIO)
    assert [e.type for e in decided] == [NEW, END] and decided[0].start_pts == pytest.approx(1.0)
    # smoothing_by_lead {} smooths audio like the rest
    assert run(fresh(smoothing_by_lead={}), burst, AUDIO) == []


def test_the_lead_modality_picks_the_smoothing_at_each_evaluation():
    # video at 1 smoothed with 1 s; audio at 6 leads at 2.0 and counts as it is; when it stops (stale), video
    # leads again and the level falls back from 6 towards 1 with video's time constant, not at once
    agg = make(smoothing_s=1.0, stale_s=0.3, threshold=3.0, min_duration_s=0.0, hold_s=0.0)
    levels = {}
    seq = [(t, 1.0, VIDEO) for t, _ in frames(0, 4, 0.0)] + [(2.0, 6.0, AUDIO)]
    for pts, value, modality in sorted(seq, key=lambda r: (r[0], r[2] is VIDEO)):
        agg.push(score(pts, value, modality))
        levels[pts] = agg.level
    assert levels[2.0] == pytest.approx(6.0)
    assert levels[2.2] == pytest.approx(6.0)  # audio's score holds until it goes stale after 2.3
    assert levels[2.4] == pytest.approx(1.0 + 5.0 * math.exp(-0.2))  # 0.2 s of video's 1 s time constant


def test_smoothing_is_causal_and_the_same_for_any_sample_spacing_of_a_constant():
    a = make(smoothing_s=1.0, threshold=3.0, min_duration_s=0.0, hold_s=0.0)
    b = make(smoothing_s=1.0, threshold=3.0, min_duration_s=0.0, hold_s=0.0)
    ta = push_all(a, [(0.0, 0.0), (0.5, 4.0), (1.0, 4.0), (1.5, 4.0), (2.0, 4.0)])
    tb = push_all(b, [(0.0, 0.0)] + frames(0.1, 2.1, 4.0, fps=10))
    # 4 * (1 - exp(-t)) >= 3 from t = ln 4 = 1.386 s after the step (the step counts from the previous sample)
    assert [(at, e.type) for at, e in ta] == [(1.5, NEW)]
    assert [(at, e.type) for at, e in tb] == [(1.4, NEW)]


# -- merge gap, cooldown, max duration -----------------------------------------------------------------------


def test_merge_gap_joins_short_bursts_into_one_that_opens():
    agg = make(threshold=3.0, min_duration_s=0.6, hold_s=0.4, merge_gap_s=0.5)
    # 0.4 s burst, 0.4 s gap, 0.4 s burst: each is short, together they span 1.2 s
    seq = frames(0, 1, 0.0) + frames(1, 1.4, 5.0) + frames(1.4, 1.8, 0.0) + frames(1.8, 2.2, 5.0) + frames(2.2, 4, 0.0)
    assert trace(push_all(agg, seq)) == [
        (1.8, "new", "ev0", 0, 1.0, None, None),  # at 1.8 the merged burst is hot again and spans 0.8 s
        (2.8, "end", "ev0", 1, 1.0, 2.2, "quiet"),  # quiet for max(hold, merge gap) = 0.5 s
    ]
    agg = make(threshold=3.0, min_duration_s=0.6, hold_s=0.4, merge_gap_s=0.3)  # the gap is too long now
    assert run(agg, seq) == []


def test_merge_gap_joins_a_second_burst_after_the_event_went_quiet():
    seq = frames(0, 1, 5.0) + frames(1, 2.5, 0.0) + frames(2.5, 3.5, 5.0) + frames(3.5, 7, 0.0)
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=0.5, merge_gap_s=2.0)
    assert trace(push_all(agg, seq)) == [
        (0.4, "new", "ev0", 0, 0.0, None, None),
        (5.5, "end", "ev0", 1, 0.0, 3.5, "quiet"),  # the burst at 2.5 came 1.5 s after the quiet began
    ]
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=0.5, merge_gap_s=1.0)  # 1.5 s apart: two events
    assert trace(push_all(agg, seq)) == [
        (0.4, "new", "ev0", 0, 0.0, None, None),
        (2.0, "end", "ev0", 1, 0.0, 1.0, "quiet"),
        (2.9, "new", "ev1", 0, 2.5, None, None),
        (4.5, "end", "ev1", 1, 2.5, 3.5, "quiet"),
    ]


def test_within_the_merge_gap_a_value_between_exit_and_enter_does_not_reopen():
    # after the hold the event is closing: only a burst at enter level continues it
    agg = make(enter_threshold=4.0, exit_threshold=2.0, min_duration_s=0.2, hold_s=0.4, merge_gap_s=1.0)
    seq = frames(0, 1, 5.0) + frames(1, 1.6, 0.0) + frames(1.6, 2.0, 3.0) + frames(2.0, 3, 0.0)
    assert trace(push_all(agg, seq)) == [
        (0.2, "new", "ev0", 0, 0.0, None, None),
        (2.0, "end", "ev0", 1, 0.0, 1.0, "quiet"),
    ]


def test_cooldown_keeps_a_new_event_from_starting_too_soon():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=0.4, cooldown_s=2.0)
    seq = frames(0, 1, 5.0) + frames(1, 1.6, 0.0) + frames(1.6, 5, 5.0) + frames(5, 6, 0.0)
    assert trace(push_all(agg, seq)) == [
        (0.4, "new", "ev0", 0, 0.0, None, None),
        (1.4, "end", "ev0", 1, 0.0, 1.0, "quiet"),
        # anomalous again from 1.6, but the cooldown runs until 3.4: the new event starts there
        (3.8, "new", "ev1", 0, 3.4, None, None),
        (5.4, "end", "ev1", 1, 3.4, 5.0, "quiet"),
    ]


def test_max_duration_ends_the_event_and_a_new_one_continues_it():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=0.4, max_duration_s=2.0)
    decided = push_all(agg, frames(0, 5, 5.0) + frames(5, 6, 0.0))
    assert trace(decided) == [
        (0.4, "new", "ev0", 0, 0.0, None, None),
        (2.0, "end", "ev0", 1, 0.0, 2.0, "max_duration"),
        (2.0, "new", "ev1", 0, 2.0, None, None),
        (4.0, "end", "ev1", 1, 2.0, 4.0, "max_duration"),
        (4.0, "new", "ev2", 0, 4.0, None, None),
        (5.4, "end", "ev2", 1, 4.0, 5.0, "quiet"),
    ]
    assert [e.continues for _, e in decided] == [None, None, "ev0", "ev0", "ev1", "ev1"]
    assert decided[2][1].modalities.keys() == {"video"} and decided[2][1].peak_score == 5.0


def test_max_duration_while_going_quiet_ends_without_a_continuation():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=1.0, max_duration_s=2.0)
    assert trace(push_all(agg, frames(0, 1.6, 5.0) + frames(1.6, 4, 0.0))) == [
        (0.4, "new", "ev0", 0, 0.0, None, None),
        (2.0, "end", "ev0", 1, 0.0, 1.6, "max_duration"),
    ]


# -- updates -------------------------------------------------------------------------------------------------


def test_interval_updates_carry_the_summary_so_far():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=0.4, update_interval_s=1.0)
    seq = frames(0, 1, 5.0) + frames(1, 2, 6.0) + frames(2, 2.6, 5.0) + frames(2.6, 4, 0.0)
    decided = push_all(agg, seq)
    assert trace(decided) == [
        (0.4, "new", "ev0", 0, 0.0, None, None),
        (1.4, "update", "ev0", 1, 0.0, None, "interval"),
        (2.4, "update", "ev0", 2, 0.0, None, "interval"),
        (3.0, "end", "ev0", 3, 0.0, 2.6, "quiet"),
    ]
    assert [e.peak_score for _, e in decided] == [5.0, 6.0, 6.0, 6.0]


def test_peak_updates_need_the_margin_and_each_message_resets_the_interval():
    agg = make(threshold=3.0, min_duration_s=0.0, hold_s=0.0, update_peak_margin=1.0, update_interval_s=1.0)
    seq = [(0.0, 4.0), (0.2, 4.9), (0.4, 5.0), (0.6, 5.5), (1.2, 5.9), (1.4, 6.1), (2.0, 6.1), (2.2, 0.0)]
    assert trace(push_all(agg, seq)) == [
        (0.0, "new", "ev0", 0, 0.0, None, None),
        (0.4, "update", "ev0", 1, 0.0, None, "peak"),  # 5.0 - 4.0 reaches the margin
        (1.4, "update", "ev0", 2, 0.0, None, "peak"),  # 6.1 - 5.0: the interval (1.0) also ran out
        (2.2, "end", "ev0", 3, 0.0, 2.2, "quiet"),  # hold 0: ends at its first quiet moment
    ]


# -- stream ends, clocks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", [EndReason.STREAM_LOST, EndReason.SHUTDOWN, EndReason.EOF])
def test_stream_end_closes_open_event_with_reason(reason):
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=5.0)
    events = run(agg, frames(0, 1, 4.0))
    assert [e.type for e in events] == [NEW]
    end = agg.end_stream(1.0, T0 + timedelta(seconds=1), reason)
    assert [(e.type, e.reason, e.end_pts) for e in end] == [(END, reason, 1.0)]
    assert end[0].event_id == events[0].event_id
    assert agg.end_stream(2.0, T0, reason) == []


def test_stream_end_while_quiet_ends_at_the_first_quiet_moment_and_opens_a_pending_candidate():
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=5.0)
    run(agg, frames(0, 1, 4.0) + frames(1, 2, 0.0))
    [end] = agg.end_stream(2.0, T0 + timedelta(seconds=2), EndReason.EOF)
    assert end.end_pts == 1.0 and end.reason is EndReason.EOF
    agg = make(threshold=3.0, min_duration_s=0.4, hold_s=5.0)
    run(agg, frames(0, 0.4, 4.0))  # 0.0 and 0.2: hot, not yet long enough
    assert [(e.type, e.start_pts, e.end_pts) for e in agg.end_stream(0.4, T0, EndReason.EOF)] == [
        (NEW, 0.0, None),
        (END, 0.0, 0.4),
    ]


def test_watermark_never_goes_backwards_and_late_scores_count_at_it():
    agg = make(threshold=3.0, min_duration_s=0.0, hold_s=0.0, stale_s=1.0)
    agg.push(score(5.0, 0.1))
    [new] = agg.push(score(4.5, 9.0, AUDIO))  # late, still fresh at the watermark
    assert agg.watermark == 5.0
    assert new.type is NEW and new.start_pts == 5.0 and new.peak_pts == 4.5
    assert agg.push(score(3.0, 9.0, AUDIO)) == []  # stale on arrival: changes nothing
    assert agg.watermark == 5.0


def test_a_score_of_another_camera_is_refused():
    with pytest.raises(ValueError, match="cam2"):
        make().push(score(0.0, 1.0, cam="cam2"))


# -- properties ----------------------------------------------------------------------------------------------


def random_settings(rng: random.Random) -> AggregatorSettings:
    enter = rng.choice([2.0, 3.0])
    return AggregatorSettings(
        fusion=rng.choice(
            [
                {"type": "max"},
                {"type": "weighted", "weights": {"video": 1.0, "audio": 2.0}},
                {"type": "any_of", "modalities": ["audio"]},
                {"type": "all_of", "modalities": ["video", "audio"]},
            ]
        ),
        enter_threshold=enter,
        exit_threshold=enter - rng.choice([0.0, 1.0]),
        smoothing_s=rng.choice([0.0, 0.0, 0.3, 1.0]),
        min_duration_s=rng.choice([0.0, 0.2, 0.5]),
        hold_s=rng.choice([0.0, 0.2, 1.0, 3.0]),
        merge_gap_s=rng.choice([0.0, 0.0, 0.5, 2.0]),
        cooldown_s=rng.choice([0.0, 0.0, 1.0]),
        max_duration_s=rng.choice([1.0, 3.0, 600.0]),
        stale_s=rng.choice([0.3, 1.5]),
        update_peak_margin=rng.choice([None, 0.5, 1.0]),
        update_on_modality=rng.choice([True, False]),
        update_interval_s=rng.choice([None, 0.5, 2.0]),
    )


def test_property_lifecycle_seq_and_duration_invariants():
    rng = random.Random(7)
    for _ in range(400):
        st = random_settings(rng)
        agg = CameraAggregator("cam1", st, new_id=map(str, itertools.count()).__next__)
        decided: list[tuple[float, AnomalyEvent]] = []
        pts = 0.0
        for _ in range(rng.randint(1, 300)):
            pts += rng.choice([0.0, 0.1, 0.2, 0.5, 1.3])
            late = rng.random() < 0.05
            modality = rng.choice([VIDEO, AUDIO])
            s = score(max(0.0, pts - 0.4) if late else pts, rng.choice([0.0, 1.0, 2.5, 3.0, 5.0, 8.0]), modality)
            decided += [(agg.watermark, e) for e in agg.push(s)]
        decided += [(pts + 1, e) for e in agg.end_stream(pts + 1, T0, EndReason.SHUTDOWN)]

        last_seq: dict[str, int] = {}
        ended: set[str] = set()
        open_id: str | None = None
        last_end_at = -1e9
        for at, e in decided:
            assert e.event_id not in ended, "no message after an event's end"
            if e.type is NEW:
                assert e.seq == 0 and e.event_id not in last_seq
                assert open_id is None, "at most one open event per camera"
                open_id = e.event_id
                if e.continues is None:  # cooldown: a fresh event starts no earlier than cooldown after an end
                    assert e.start_pts >= last_end_at + st.cooldown_s - 1e-6
                    assert at - e.start_pts >= st.min_duration_s - 1e-6
            else:
                assert e.event_id == open_id and e.seq == last_seq[e.event_id] + 1, "seq increases by one"
            last_seq[e.event_id] = e.seq
            assert e.modalities, "every message names at least one modality"
            if e.type is END:
                ended.add(e.event_id)
                open_id = None
                last_end_at = at
                assert e.end_pts is not None and e.start_pts <= e.end_pts <= at + 1e-6
                assert e.end_pts - e.start_pts <= st.max_duration_s + 1e-6, "no event longer than max_duration"
                assert e.reason is not None and e.update_reason is None
            elif e.type is UPDATE:
                assert e.update_reason in set(UpdateReason)
        assert set(last_seq) == ended, "every new gets exactly one end"
