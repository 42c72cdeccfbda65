"""The temporal aggregator: calibrated scores of one camera in, anomaly events (new / update / end) out.

Driven by stream time only (each score's ``pts``), so a replay decides exactly what a live run decides and
tests drive it with exact score sequences and no sleeping. The watermark (latest pts seen) never goes
backwards: a late score updates its modality but is evaluated at the watermark. Per camera, at each
evaluation:

1. **fresh modalities**: each modality's latest calibrated score holds until that modality's next score, and
   goes stale after ``stale_s`` (a modality whose stream stopped cannot keep an event open);
2. **fusion** of the fresh modalities into one score (``fusion.type``): ``max`` (of each calibrated score less
   its modality's ``discount``: the temporal model's by 1 unless configured); ``weighted`` (weighted mean
   over the fresh modalities that have a weight, renormalised so a silent microphone does not dilute the
   video); ``any_of`` (max over a set); ``all_of`` (min over a set: every one of them must be fresh and
   anomalous);
3. **smoothing**: an exponential moving average of the fused score over stream time with time constant
   ``smoothing_s`` (default ``DEFAULT_SMOOTHING_S``; causal; irregular sampling handled by ``1 - exp(-dt / tau)``);
   0 turns it off;
4. **hysteresis**: the smoothed score must reach ``enter_threshold``; a candidate opens as an event
   (``new``) once it spans ``min_duration_s`` (bursts closer than ``merge_gap_s`` count as one) and no
   ``cooldown_s`` after the previous end is running. An open event stays open while the score is at or above
   ``exit_threshold``; once it stayed below for ``hold_s`` it is closing, and it ends (``end``, reason
   ``quiet``, ``end_pts`` = its first quiet moment) once it stayed quiet for ``max(hold_s, merge_gap_s)``.
   Between ``hold_s`` and ``merge_gap_s`` only a new burst (at or above ``enter_threshold``) continues it:
   two bursts closer than ``merge_gap_s`` are one event;
5. an event that reaches ``max_duration_s`` ends with reason ``max_duration``; if it is still anomalous a
   new event starts at that instant (``continues`` = the old id; no min duration or cooldown), so no event
   is longer;
6. ``update`` messages while open: when a modality joins, when the peak rose ``update_peak_margin`` above
   the peak of the last message, and when ``update_interval_s`` passed since the last message; each carries
   the summary so far and one ``update_reason``.

Between evaluations the signal holds its last value (zero-order hold): at each new pts the time since the
previous one is accounted first (an event may end, open or reach its max duration then), then the new score
applies.

A stream that ends or is lost, and a shutdown, end the open event with that reason (``end_stream``).
"""

from __future__ import annotations

import collections
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.events import AnomalyEvent, EndReason, EventType, ModalityScore, UpdateReason
from pipeline.frames import Modality, Score
from pipeline.strict import StrictModel

# Modality names the fusion config may name: the runner's modalities and those the scorers are growing into.
KNOWN_MODALITIES = frozenset({m.value for m in Modality} | {"temporal", "tampering"})

# Stream times are float seconds built from rational frame times (2.0 + 0.4 = 2.4000000000000004): durations
# are compared with this tolerance, a microsecond, far below any frame interval.
_EPS = 1e-6


def _check_names(names: list[str] | dict[str, float]) -> None:
    unknown = sorted(set(names) - KNOWN_MODALITIES)
    if unknown:
        raise ValueError(
            f"unknown modality {', '.join(map(repr, unknown))} (known: {', '.join(sorted(KNOWN_MODALITIES))})"
        )


# What max fusion subtracts from a modality's calibrated score unless configured. The temporal model's scores count
# when they are 10x rarer than the others': its calibration rests on fewer, strongly overlapping windows (each score
# re-reads the last 2 s) and it strays further on footage unlike its training than the video model does. Measured
# (frame-level fused AUC, same weights, discount 0 → 1): the samples 0.929 → 0.932 (16 min package), 0.913 → 0.913
# and 0.926 → 0.928 (4 and 8 min); real footage (benchmarks/real_scene.py, three seeds) 0.932 / 0.948 / 0.887 →
# 0.936 / 0.955 / 0.907; benchmarks/robustness.py's variants within ±0.002 (two false alarms fewer on the noisy one);
# the same events on the samples (one opens at the bang instead of 0.8 s before it).
DEFAULT_DISCOUNT: dict[str, float] = {"temporal": 1.0}

# The fused score's smoothing unless configured: a time constant of 0.4 s (two frames at the models' 5 fps). A normal
# scene's worst patch or sound flickers from frame to frame (a lone frame at 3-4 among frames at 1), while an unusual
# object or sound stays for many; the average lowers the lone frames and barely delays the others (a score of 10
# reaches 3 within the frame, one of 5 a frame later). Measured 2026-12-05 (frame-level fused AUC, smoothing 0 → 0.3
# → 0.4 s, same packages; false alarms in brackets): the samples 0.942 (1) → 0.949 (0) → 0.948 (0); real footage
# (benchmarks/real_scene.py, three seeds) 0.909 / 0.925 / 0.943 (1 / 2 / 1) → 0.918 / 0.946 / 0.952 (2 / 2 / 0) →
# 0.921 / 0.952 / 0.957 (2 / 1 / 0); benchmarks/robustness.py's variants as_is 0.919 (1) → 0.923 (0) → 0.923 (0),
# gray43_10fps 0.903 (2) → 0.912 (2) → 0.911 (0), noisy 0.914 (2) → 0.925 (1) → 0.926 (0), dusk_lowbit 0.866 (2) →
# 0.870 (1) → 0.870 (1): 12 false alarms → 4 in all. 0.6 s and more lowers the samples (0.942 at 0.6, 0.919 at 1.0):
# a sound's end is then held too long. Every recall stayed complete.
DEFAULT_SMOOTHING_S = 0.4

# How long the smoothed score must stay at or above enter_threshold before an event opens unless configured: 0.6 s,
# three frames at 5 fps. With smoothing a lone frame at 10 holds the average above 3 for two frames (4.5, then 3.1),
# which spanned the 0.4 s used before: benchmarks/shake.py's normal clip shaken by up to 0.5 model px then opened 3
# events in 40 s instead of 0, by up to 1 px 4 and 2 (two seeds) instead of 1 and 1. With 0.6 s: 0 at 0.5 px, 2 and 1
# at 1 px; over the footage above false alarms 4 → 2 (12 with neither), every anomaly still found. An event is
# decided 0.2 s later for it (median from the anomaly's start to the decision, same footage: 0.4 s with neither
# change, 0.8 s with both).
DEFAULT_MIN_DURATION_S = 0.6


class MaxFusion(StrictModel):
    """The highest calibrated score among the fresh modalities, each less its modality's discount."""

    type: Literal["max"] = "max"
    discount: dict[str, Annotated[float, Field(ge=0, le=10)]] = Field(
        default_factory=lambda: dict(DEFAULT_DISCOUNT),
        description="Subtracted from a modality's calibrated score before the max: 1 = that modality counts when "
        "it is 10x rarer than the others (default: temporal 1; {} counts every modality as it is)",
    )

    @field_validator("discount")
    @classmethod
    def _valid(cls, discount: dict[str, float]) -> dict[str, float]:
        _check_names(discount)
        return discount


class WeightedFusion(StrictModel):
    """Weighted mean of the fresh modalities that have a weight (renormalised over those that are fresh)."""

    type: Literal["weighted"] = "weighted"
    weights: dict[str, Annotated[float, Field(ge=0, le=100)]] = Field(
        min_length=1,
        description="Weight per modality (video, audio, temporal, tampering); unlisted ones are ignored",
    )

    @field_validator("weights")
    @classmethod
    def _valid(cls, weights: dict[str, float]) -> dict[str, float]:
        _check_names(weights)
        if not any(w > 0 for w in weights.values()):
            raise ValueError("at least one weight must be positive")
        return weights


class AnyOfFusion(StrictModel):
    """The highest calibrated score among the fresh modalities of a set (the others are ignored)."""

    type: Literal["any_of"] = "any_of"
    modalities: list[str] = Field(min_length=1, description="The modalities that may open an event")

    @field_validator("modalities")
    @classmethod
    def _valid(cls, names: list[str]) -> list[str]:
        _check_names(names)
        return sorted(set(names))


class AllOfFusion(StrictModel):
    """The lowest calibrated score of a set of modalities: anomalous only when all of them are, and fresh."""

    type: Literal["all_of"] = "all_of"
    modalities: list[str] = Field(min_length=1, description="The modalities that must all be anomalous")

    @field_validator("modalities")
    @classmethod
    def _valid(cls, names: list[str]) -> list[str]:
        _check_names(names)
        return sorted(set(names))


Fusion = Annotated[MaxFusion | WeightedFusion | AnyOfFusion | AllOfFusion, Field(discriminator="type")]


class AggregatorSettings(StrictModel):
    """Per-camera event decisions; the daemon's config embeds this block as ``events:``."""
    fusion: Fusion = Field(
        default_factory=MaxFusion,
        description="How modalities combine: max, weighted, any_of, all_of "
        "(a mapping with type:, or just the type name)",
    )
    threshold: float = Field(
        default=3.0,
        gt=0,
        le=10,
        description="Calibrated score that counts as anomalous (3.0: exceeded "
        "by 1 in 1000 normal frames or windows); shorthand for enter and exit threshold",
    )
    enter_threshold: float | None = Field(
        default=None, gt=0, le=10, description="Smoothed score an event needs to open (default: threshold)"
    )
    exit_threshold: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="An open event is quiet below this (default: threshold); at most enter_threshold",
    )
    smoothing_s: float = Field(
        default=DEFAULT_SMOOTHING_S,
        ge=0,
        le=60,
        description="Time constant of the moving average of the fused score over stream time; 0: none",
    )
    min_duration_s: float = Field(
        default=DEFAULT_MIN_DURATION_S, ge=0, le=60, description="Span above enter_threshold before an event opens"
    )
    hold_s: float = Field(default=2.0, ge=0, le=600, description="Time below exit_threshold before an event is quiet")
    merge_gap_s: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="Bursts closer than this are one event (before it opens, and after it went quiet)",
    )
    cooldown_s: float = Field(
        default=0.0, ge=0, le=3600, description="After an event ended, no new one starts for this long"
    )
    max_duration_s: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description="An event this long ends (max_duration); a new one continues it if the anomaly persists",
    )
    stale_s: float = Field(default=1.5, gt=0, le=60, description="A modality's last score counts this long")
    update_peak_margin: float | None = Field(
        default=1.0,
        gt=0,
        le=100,
        description="Send an update when the peak rose this much above the last message's; null: never",
    )
    update_on_modality: bool = Field(default=True, description="Send an update when a modality joins the event")
    update_interval_s: float | None = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Send an update when no message about the event went out for this long; null: never",
    )

    @field_validator("fusion", mode="before")
    @classmethod
    def _fusion_shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> AggregatorSettings:
        if self.exit > self.enter:
            raise ValueError(f"exit_threshold ({self.exit:g}) must not exceed enter_threshold ({self.enter:g})")
        if self.max_duration_s <= self.min_duration_s:
            raise ValueError("max_duration_s must be longer than min_duration_s")
        return self

    @property
    def enter(self) -> float:
        """The threshold an event needs to open (``enter_threshold``, else ``threshold``)."""
        return self.enter_threshold if self.enter_threshold is not None else self.threshold

    @property
    def exit(self) -> float:
        """Below this an open event is quiet (``exit_threshold``, else ``threshold``)."""
        return self.exit_threshold if self.exit_threshold is not None else self.threshold

    @property
    def close_after_s(self) -> float:
        """Quiet time after which an open event ends."""
        return max(self.hold_s, self.merge_gap_s)

    def build(self, camera_id: str, *, new_id: Callable[[], str] | None = None) -> CameraAggregator:
        return CameraAggregator(camera_id, self, new_id=new_id or _uuid)


@dataclass(frozen=True, slots=True)
class _Instant:
    """A point on the camera's stream clock, with the wall time and capture time that go with it."""

    pts: float
    wall: datetime
    monotonic_ns: int = 0

    def plus(self, seconds: float) -> _Instant:
        return _Instant(self.pts + seconds, self.wall + timedelta(seconds=seconds), 0)


@dataclass(frozen=True, slots=True)
class _Eval:
    """One evaluation of the fused score: its value (None: nothing to fuse) and the scores behind it."""

    fused: float | None
    lead: Score | None  # the highest contributing score: its time and box label the peak
    contributors: tuple[Score, ...]
    discount: dict[str, float] = field(default_factory=dict)  # max fusion's, per modality

    def counted(self, s: Score) -> float:
        return _counted(s, self.discount)


@dataclass(slots=True)
class _Track:
    """Peaks accumulated over a candidate and then its event."""

    peak_value: float = -math.inf
    peak: Score | None = None
    modality_peaks: dict[str, ModalityScore] = field(default_factory=dict)
    included: set[str] = field(default_factory=set)  # modalities that reached enter_threshold: part of the event
    # labels of the leading scores at/above enter_threshold, counted per evaluation: the event's label is the
    # commonest (a hand sliding over the lens looks like a moved view for a frame before it covers it)
    labels: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, ev: _Eval, enter: float) -> None:
        if ev.fused is not None and ev.lead is not None and ev.fused > self.peak_value:
            self.peak_value, self.peak = ev.fused, ev.lead
        if ev.lead is not None and ev.lead.label is not None and ev.counted(ev.lead) >= enter:
            self.labels[ev.lead.label] += 1
        for s in ev.contributors:
            name = _name(s)
            cur = self.modality_peaks.get(name)
            if cur is None or s.calibrated > cur.peak:
                self.modality_peaks[name] = ModalityScore(s.calibrated, s.wall_time, s.pts)
            if ev.counted(s) >= enter:
                self.included.add(name)

    def ensure_included(self) -> None:
        """An event names a modality: with smoothing, none may have reached the threshold by itself."""
        if not self.included and self.modality_peaks:
            self.included.add(max(self.modality_peaks.items(), key=lambda kv: kv[1].peak)[0])

    def modalities(self) -> dict[str, ModalityScore]:
        return {name: self.modality_peaks[name] for name in sorted(self.included) if name in self.modality_peaks}

    @property
    def label(self) -> str | None:
        return self.labels.most_common(1)[0][0] if self.labels else None


@dataclass(slots=True)
class _Candidate:
    start: _Instant
    hot_until: float  # end of its latest interval at/above enter_threshold (== now while still hot)
    track: _Track


@dataclass(slots=True)
class _Event:
    event_id: str
    start: _Instant
    track: _Track
    continues: str | None = None
    seq: int = 0
    quiet_since: _Instant | None = None
    reported_peak: float = -math.inf
    reported_modalities: frozenset[str] = frozenset()
    last_message_pts: float = -math.inf


def _counted(s: Score, discount: dict[str, float]) -> float:
    """What a score counts for in max fusion: its calibrated score less its modality's discount."""
    return s.calibrated - discount.get(_name(s), 0.0)


def _uuid() -> str:
    return uuid.uuid4().hex


def _name(score: Score) -> str:
    m = score.modality
    return m.value if isinstance(m, Modality) else str(m)


class CameraAggregator:
    """Aggregates one camera's scores. Not thread-safe: one per camera, fed from one thread."""

    def __init__(self, camera_id: str, settings: AggregatorSettings, *, new_id: Callable[[], str] = _uuid) -> None:
        self.camera_id = camera_id
        self.settings = settings
        self._new_id = new_id
        self._latest: dict[str, Score] = {}
        self._now: _Instant | None = None  # the watermark, with its wall and capture time
        self._hot = False  # the smoothed score at the last evaluation was >= enter_threshold
        self._last_eval = _Eval(None, None, ())
        self._ema: float | None = None  # smoothed score at the last evaluation (at self._ema_pts)
        self._ema_pts = -math.inf
        self._ema_base: tuple[float, float] | None = None  # (pts, value) at the last evaluation before now
        self._level: float | None = None  # the smoothed fused score at the last evaluation
        self._candidate: _Candidate | None = None
        self._event: _Event | None = None
        self._cooldown_until = -math.inf

    @property
    def watermark(self) -> float:
        return self._now.pts if self._now is not None else -float("inf")

    @property
    def level(self) -> float | None:
        """The smoothed fused score at the watermark, as the thresholds see it (None: nothing fused yet)."""
        return self._level

    @property
    def event_open(self) -> bool:
        return self._event is not None

    def push(self, score: Score) -> list[AnomalyEvent]:
        """Take one score; return the events it decided (usually none)."""
        if score.camera_id != self.camera_id:
            raise ValueError(f"score for {score.camera_id!r} pushed to aggregator of {self.camera_id!r}")
        name = _name(score)
        held = self._latest.get(name)
        if held is None or score.pts >= held.pts:  # a modality's older score never replaces a newer one
            self._latest[name] = score
        events: list[AnomalyEvent] = []
        if self._now is None or score.pts > self._now.pts:
            events += self._advance(_Instant(score.pts, score.wall_time, score.monotonic_ns), score.monotonic_ns)
        events += self._apply(score.monotonic_ns)
        return events

    def end_stream(self, pts: float, wall_time: datetime, reason: EndReason) -> list[AnomalyEvent]:
        """The stream ended, was lost, or the daemon stops: close the open event with ``reason``."""
        events: list[AnomalyEvent] = []
        if self._now is None or pts > self._now.pts:
            events += self._advance(_Instant(pts, wall_time, 0), 0)
        assert self._now is not None
        ev = self._event
        if ev is not None:
            events.append(self._end(ev, ev.quiet_since or self._now, reason, 0))
            self._cooldown_until = self._now.pts + self.settings.cooldown_s
        self._latest.clear()
        self._candidate = None
        self._hot = False
        self._last_eval = _Eval(None, None, ())
        self._ema, self._ema_pts, self._ema_base = None, -math.inf, None
        self._level = None
        return events

    # -- the state machine -----------------------------------------------------------------------------------
    def _advance(self, to: _Instant, decided_from: int) -> list[AnomalyEvent]:
        """Move the clock to ``to``: the last evaluation's value held until now; decide what that implies."""
        self._now = to
        now = to.pts
        st = self.settings
        out: list[AnomalyEvent] = []
        cand = self._candidate
        if cand is not None and self._hot:
            cand.hot_until = now
        out += self._enforce_max_duration(decided_from)
        ev = self._event
        if ev is not None and ev.quiet_since is not None and now - ev.quiet_since.pts >= st.close_after_s - _EPS:
            out.append(self._end(ev, ev.quiet_since, EndReason.QUIET, decided_from))
            self._cooldown_until = now + st.cooldown_s
        if self._event is None and self._candidate is not None:
            out += self._maybe_open(decided_from)
        return out

    def _apply(self, decided_from: int) -> list[AnomalyEvent]:
        """Evaluate the fused score at the watermark with the scores now known."""
        assert self._now is not None
        now = self._now
        st = self.settings
        ev_ = self._fuse(now.pts)
        level = self._smooth(now.pts, ev_.fused)
        self._level = level if ev_.fused is not None else None
        # nothing to fuse (every modality stale, or one of all_of missing) is never anomalous
        self._hot = hot = ev_.fused is not None and level >= st.enter
        alive = ev_.fused is not None and level >= st.exit
        self._last_eval = ev_
        out: list[AnomalyEvent] = []
        event = self._event
        if event is not None:
            event.track.add(ev_, st.enter)
            if event.quiet_since is None:
                if not alive:
                    event.quiet_since = now
            elif now.pts - event.quiet_since.pts < st.hold_s - _EPS:
                if alive:
                    event.quiet_since = None
            elif hot:  # closing, within the merge gap: a new burst continues the event
                event.quiet_since = None
            if event.quiet_since is not None and now.pts - event.quiet_since.pts >= st.close_after_s - _EPS:
                out.append(self._end(event, event.quiet_since, EndReason.QUIET, decided_from))  # hold_s 0
                self._cooldown_until = now.pts + st.cooldown_s
                return out
            out += self._maybe_update(event, decided_from)
            return out
        cand = self._candidate
        if cand is not None and cand.hot_until < now.pts - _EPS and now.pts - cand.hot_until >= st.merge_gap_s - _EPS:
            cand = self._candidate = None  # its gap grew past the merge gap: that burst is over
        if hot and cand is None and now.pts >= self._cooldown_until - _EPS:
            cand = self._candidate = _Candidate(now, now.pts, _Track())
        elif hot and cand is not None:
            cand.hot_until = now.pts
        if cand is not None:
            cand.track.add(ev_, st.enter)
            out += self._maybe_open(decided_from)
        return out

    def _maybe_open(self, decided_from: int) -> list[AnomalyEvent]:
        cand = self._candidate
        assert cand is not None and self._now is not None
        now = self._now.pts
        live = cand.hot_until >= now - _EPS
        if not live or now < self._cooldown_until - _EPS:
            return []
        if cand.hot_until - cand.start.pts < self.settings.min_duration_s - _EPS:
            return []
        self._candidate = None
        cand.track.ensure_included()
        event = self._event = _Event(self._new_id(), cand.start, cand.track)
        # a candidate merged across gaps may already span max_duration_s when it opens
        return [self._message(event, EventType.NEW, decided_from), *self._enforce_max_duration(decided_from)]

    def _enforce_max_duration(self, decided_from: int) -> list[AnomalyEvent]:
        out: list[AnomalyEvent] = []
        while self._event is not None and self.watermark - self._event.start.pts >= self.settings.max_duration_s - _EPS:
            out += self._max_duration(self._event, decided_from)
        return out

    def _max_duration(self, event: _Event, decided_from: int) -> list[AnomalyEvent]:
        st = self.settings
        # (the watermark may sit a rounding error before the exact boundary: never start the next event later)
        boundary = event.start.plus(min(st.max_duration_s, self.watermark - event.start.pts))
        if event.quiet_since is not None:  # it was already going quiet: no continuation
            self._cooldown_until = self.watermark + st.cooldown_s
            return [self._end(event, event.quiet_since, EndReason.MAX_DURATION, decided_from)]
        out = [self._end(event, boundary, EndReason.MAX_DURATION, decided_from)]
        track = _Track()
        track.add(self._last_eval, st.enter)  # the value that held across the boundary
        track.ensure_included()
        nxt = self._event = _Event(self._new_id(), boundary, track, continues=event.event_id)
        out.append(self._message(nxt, EventType.NEW, decided_from))
        return out

    def _maybe_update(self, event: _Event, decided_from: int) -> list[AnomalyEvent]:
        st = self.settings
        assert self._now is not None
        reason: UpdateReason | None = None
        if st.update_on_modality and set(event.track.included) - event.reported_modalities:
            reason = UpdateReason.MODALITY
        elif st.update_peak_margin is not None and (
            event.track.peak_value - event.reported_peak >= st.update_peak_margin - _EPS
        ):
            reason = UpdateReason.PEAK
        elif st.update_interval_s is not None and (
            self._now.pts - event.last_message_pts >= st.update_interval_s - _EPS
        ):
            reason = UpdateReason.INTERVAL
        if reason is None:
            return []
        event.seq += 1
        return [self._message(event, EventType.UPDATE, decided_from, update_reason=reason)]

    def _end(self, event: _Event, at: _Instant, reason: EndReason, decided_from: int) -> AnomalyEvent:
        event.seq += 1
        self._event = None
        return self._message(event, EventType.END, decided_from, end=at, reason=reason)

    # -- scores ----------------------------------------------------------------------------------------------
    def _fuse(self, now: float) -> _Eval:
        fresh = {name: s for name, s in self._latest.items() if now - s.pts <= self.settings.stale_s + _EPS}
        fusion = self.settings.fusion
        if isinstance(fusion, MaxFusion):
            scores = list(fresh.values())
        elif isinstance(fusion, WeightedFusion):
            scores = [s for name, s in fresh.items() if fusion.weights.get(name, 0.0) > 0]
        else:
            if isinstance(fusion, AllOfFusion) and any(name not in fresh for name in fusion.modalities):
                return _Eval(None, None, ())
            scores = [fresh[name] for name in fusion.modalities if name in fresh]
        if not scores:
            return _Eval(None, None, ())
        discount = fusion.discount if isinstance(fusion, MaxFusion) else {}
        lead = max(scores, key=lambda s: _counted(s, discount))
        if isinstance(fusion, WeightedFusion):
            weights = [fusion.weights[_name(s)] for s in scores]
            value = sum(w * s.calibrated for w, s in zip(weights, scores, strict=True)) / sum(weights)
        elif isinstance(fusion, AllOfFusion):
            value = min(s.calibrated for s in scores)
        else:
            value = _counted(lead, discount)
        return _Eval(value, lead, tuple(sorted(scores, key=_name)), discount)

    def _smooth(self, now: float, fused: float | None) -> float:
        """Exponential moving average over stream time; nothing to fuse counts as 0."""
        tau = self.settings.smoothing_s
        x = fused if fused is not None else 0.0
        if tau <= 0:
            level = x
        else:
            if now > self._ema_pts + _EPS and self._ema is not None:
                self._ema_base = (self._ema_pts, self._ema)
            if self._ema_base is None:
                level = x
            else:
                base_pts, base = self._ema_base
                level = x + (base - x) * math.exp(-(now - base_pts) / tau)
            self._ema, self._ema_pts = level, now
        return level

    def _message(
        self,
        event: _Event,
        type_: EventType,
        decided_from: int,
        *,
        end: _Instant | None = None,
        reason: EndReason | None = None,
        update_reason: UpdateReason | None = None,
    ) -> AnomalyEvent:
        track = event.track
        peak = track.peak
        modalities = track.modalities()
        event.reported_peak = track.peak_value
        event.reported_modalities = frozenset(modalities)
        if self._now is not None:
            event.last_message_pts = self._now.pts
        peak_value = track.peak_value if peak is not None else 0.0
        return AnomalyEvent(
            event_id=event.event_id,
            seq=event.seq,
            type=type_,
            camera_id=self.camera_id,
            start_time=event.start.wall,
            start_pts=event.start.pts,
            peak_score=peak_value,
            peak_time=peak.wall_time if peak is not None else event.start.wall,
            peak_pts=peak.pts if peak is not None else event.start.pts,
            modalities=modalities,
            end_time=end.wall if end is not None else None,
            end_pts=end.pts if end is not None else None,
            reason=reason,
            update_reason=update_reason,
            continues=event.continues,
            box=peak.box if peak is not None else None,
            label=track.label,
            decided_from_monotonic_ns=decided_from,
        )
