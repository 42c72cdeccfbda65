"""The temporal aggregator: calibrated scores of one camera in, anomaly events (new / update / end) out.

Driven by stream time only (each score's ``pts``), so a replay decides exactly what a live run decides and tests
drive it with exact score sequences and no sleeping. The watermark (latest pts seen) never goes backwards: a late
score updates its modality but is evaluated at the watermark. Between evaluations the signal holds its last value:
at each new pts the time since the previous one is accounted first (an event may end, open or reach its max
duration then), then the new score applies. Each evaluation (the settings: ``pipeline.aggregator_settings``):

1. **fresh modalities**: each modality's latest calibrated score holds until its next one and goes stale after
   ``stale_s`` (a modality whose stream stopped cannot keep an event open);
2. **fusion** of the fresh modalities into one score (``fusion.type``: ``max`` less each modality's discount,
   ``weighted``, ``any_of``, ``all_of``);
3. **smoothing**: an exponential moving average over stream time, time constant ``smoothing_s`` or the lead
   modality's ``smoothing_by_lead`` (causal; irregular sampling: ``1 - exp(-dt / tau)``; 0 turns it off);
4. **hysteresis**: a candidate at or above ``enter_threshold`` opens (``new``) once it spans ``min_duration_s``
   (bursts closer than ``merge_gap_s`` count as one) and no ``cooldown_s`` runs; an open event stays open at or
   above ``exit_threshold``, is closing after ``hold_s`` below it, and ends (``end``, reason ``quiet``, ``end_pts``
   its first quiet moment) after ``max(hold_s, merge_gap_s)``; until then only a new burst continues it;
5. an event that reaches ``max_duration_s`` ends (``max_duration``); if still anomalous a new event continues it at
   that instant (``continues`` = the old id; no min duration or cooldown), so no event is longer;
6. ``update`` messages while open: when a modality joins, when the peak rose ``update_peak_margin`` above the last
   message's, and when ``update_interval_s`` passed since the last message, each with one ``update_reason``.

A stream that ends or is lost, and a shutdown, end the open event with that reason (``end_stream``).
"""

from __future__ import annotations

import collections
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.aggregator_settings import (
    DEFAULT_DISCOUNT,
    DEFAULT_MIN_DURATION_S,
    DEFAULT_SMOOTHING_S,
    KNOWN_MODALITIES,
    AggregatorSettings,
    AllOfFusion,
    AnyOfFusion,
    Fusion,
    MaxFusion,
    WeightedFusion,
)
from pipeline.events import AnomalyEvent, EndReason, EventType, ModalityScore, UpdateReason
from pipeline.frames import Modality, Score

# The settings (pipeline.aggregator_settings) are importable from here too, with the aggregator that applies them.
__all__ = [
    "DEFAULT_DISCOUNT",
    "DEFAULT_MIN_DURATION_S",
    "DEFAULT_SMOOTHING_S",
    "KNOWN_MODALITIES",
    "AggregatorSettings",
    "AllOfFusion",
    "AnyOfFusion",
    "CameraAggregator",
    "Fusion",
    "MaxFusion",
    "WeightedFusion",
]

# Stream times are float seconds built from rational frame times (2.0 + 0.4 = 2.4000000000000004): durations
# are compared with this tolerance, a microsecond, far below any frame interval.
_EPS = 1e-6


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
        level = self._smooth(now.pts, ev_.fused, st.smoothing_for(_name(ev_.lead) if ev_.lead is not None else None))
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

    def _smooth(self, now: float, fused: float | None, tau: float) -> float:
        """Exponential moving average over stream time with time constant ``tau``; nothing to fuse counts as 0."""
        x = fused if fused is not None else 0.0
        if now > self._ema_pts + _EPS and self._ema is not None:
            self._ema_base = (self._ema_pts, self._ema)
        if tau <= 0 or self._ema_base is None:
            level = x
        else:
            base_pts, base = self._ema_base
            level = x + (base - x) * math.exp(-(now - base_pts) / tau)
        # kept with tau 0 too: the modality that leads next smooths on from here
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
