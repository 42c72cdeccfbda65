"""Teaching a model from operators' verdicts: the clips of events marked normal folded into its calibration.

An event an operator marked ``normal`` (``edge feedback``, the console) says: scores like these are normal on this
camera. ``recalibrate`` scores each such event's clip through the runtime path (``Runner``, the daemon's own) and,
for each modality that led the event (those it names at or above the exit threshold), folds the clip's raw scores
into that modality's calibration (``fold``):

* below the raw score where the calibration reads ``threshold - margin`` (2.5 for the default 3), nothing changes:
  normal footage scores as before;
* from there up to the highest score of the clips it reads ``threshold - margin``: the verdict is that the event
  should not open again, however rare the package found such scores (a clip holds a few seconds against hours);
* beyond that, surprise grows again along an exponential tail whose scale is the spread of the clips' own top
  tenth (at least the calibration's tail scale): something that stands out from the marked event as much as the
  event stood out within its clip still opens one.

A package keeps no raw sample, only its fitted calibration (``pipeline.calibration``: a quantile table and an
exponential tail): the folded calibration is built in that same form, its body the original's up to the cap.

What it costs: a calibration says how rare a raw score is, not where or what: after folding a parked van, a car on
the same path whose video scores stay below the van's reads as normal too on the modalities folded (it still opens
an event through a modality that was not, such as its engine's sound). Modalities the events did not name keep
their calibration. The result is a new package version (``version`` from its content, ``created`` now) whose
``trained_on.sources`` name each folded clip with its sha256 and the verdict's event: the provenance events carry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.calibration import Calibration
from pipeline.engines.base import AnyEngineConfig, OrtEngineConfig
from pipeline.engines.cache import file_sha256
from pipeline.frames import Score
from pipeline.models.package import ModelPackage, SourceInfo
from pipeline.runner import Runner
from pipeline.scoring_model import PackageScorer
from pipeline.sources.spec import SourceSpec

log = logging.getLogger(__name__)

MODALITIES = ("video", "temporal", "audio")
_SCORE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class NormalClip:
    """The clip of an event marked normal, and the modalities the event named (those that reached the threshold)."""

    event_id: str
    path: Path
    modalities: frozenset[str]


@dataclass
class FoldReport:
    """What ``recalibrate`` did, per modality: how many scores it folded, the raw score the threshold corresponds
    to before and after, and the clips' highest calibrated score before and after."""

    package_id: str
    version_from: str
    version_to: str = ""
    modalities: dict[str, dict[str, Any]] = field(default_factory=dict)
    clips: list[str] = field(default_factory=list)


def fold(cal: Calibration, raw: np.ndarray, threshold: float, margin: float = 0.5) -> Calibration:
    """``cal`` with the normal scores ``raw`` folded in: unchanged up to where it reads ``threshold - margin``,
    flat at that level up to the highest of ``raw``, and beyond it an exponential tail at the spread of ``raw``'s
    own top tenth (at least ``cal``'s tail scale). ``cal`` itself when ``raw`` already reads below that level."""
    x = np.asarray(raw, dtype=np.float64)
    x = x[np.isfinite(x)]
    cap = threshold - margin
    if x.size == 0 or float(cal.calibrate(np.array([x.max()]))[0]) <= cap:
        return cal
    top, p = float(x.max()), 10.0**-cap
    edge = cal.raw_threshold(cap)  # the original reaches the cap here: below it, nothing changes
    knots = np.unique(
        np.concatenate([cal.values[cal.values < edge], np.linspace(min(cal.tail_threshold, edge), edge, 16)])
    )
    levels = 1.0 - cal.survival(knots)
    rising = np.concatenate([[True], np.diff(levels) > 0])  # Calibration wants levels strictly increasing
    knots, levels = knots[rising], levels[rising]
    levels[-1] = min(levels[-1], 1.0 - p - 1e-12)
    high = x[x >= np.quantile(x, 0.9)]
    spread = max(float((high - high.min()).mean()) if high.size > 1 else 0.0, cal.tail_scale)
    return Calibration(np.append(levels, 1.0 - p), np.append(knots, top), spread, cal.n_samples + x.size, cal.max_score)


def score_clip(package: ModelPackage, clip: Path, engine: AnyEngineConfig | None = None) -> dict[str, np.ndarray]:
    """Raw scores of a clip by modality, through the runtime path (a replay ``Runner``, the daemon's)."""
    scorer = PackageScorer(package, engine or OrtEngineConfig())
    scores: list[Score] = []
    try:
        runner = Runner([SourceSpec("fold", str(clip))], scorer, lambda ev: None, on_score=scores.append)
        failures = runner.open_sources()
        if failures:
            raise ValueError(f"{clip}: {failures['fold']}")
        runner.start()
        runner.wait(_SCORE_TIMEOUT_S)
        runner.stop()
        runner.join()
    finally:
        scorer.close()
    return {m: np.array([s.raw for s in scores if s.modality.value == m], dtype=np.float64) for m in MODALITIES}


def recalibrate(
    package: ModelPackage,
    clips: Sequence[NormalClip],
    out: Path,
    *,
    threshold: float,
    camera_id: str,
    engine: AnyEngineConfig | None = None,
) -> FoldReport:
    """Fold ``clips`` into ``package``'s calibrations (see the module docstring) and write the new version to
    ``out``. ``ValueError`` when there is nothing to fold."""
    if not clips:
        raise ValueError(f"camera {camera_id}: no clip of an event marked normal that this package has not folded yet")
    report = FoldReport(package.package_id, package.version)
    folded: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
    for clip in clips:
        raw = score_clip(package, clip.path, engine)
        for m in clip.modalities & set(MODALITIES):
            folded[m].append(raw[m])
        report.clips.append(f"{clip.event_id}: {clip.path.name} ({', '.join(sorted(clip.modalities))})")
    update: dict[str, Any] = {}
    for m, parts in folded.items():
        spec = getattr(package, m)
        if spec is None or not parts:
            continue
        x = np.concatenate(parts)
        cal = fold(spec.calibration, x, threshold)
        update[m] = spec.model_copy(update={"calibration": cal})
        report.modalities[m] = {
            "folded": int(x.size),
            "raw_at_threshold": [
                round(spec.calibration.raw_threshold(threshold), 4),
                round(cal.raw_threshold(threshold), 4),
            ],
            "clip_max": [round(float(spec.calibration.calibrate(x).max()), 2), round(float(cal.calibrate(x).max()), 2)],
        }
    if not update:
        raise ValueError(f"camera {camera_id}: the events marked normal name no modality this package scores")
    sources = [*package.trained_on.sources, *(_source(c, camera_id) for c in clips)]
    new = package.model_copy(
        update={
            **update,
            "trained_on": package.trained_on.model_copy(update={"sources": sources}),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    version = _content_version(new)
    new = new.model_copy(update={"version": version})
    new._root = package.root  # graphs are copied from the package folded from
    new.save(out)
    report.version_to = version
    return report


def _source(clip: NormalClip, camera_id: str) -> SourceInfo:
    import av

    with av.open(str(clip.path)) as c:
        duration = float(c.duration or 0) / 1e6
    return SourceInfo(
        name=f"marked normal: camera {camera_id}, event {clip.event_id}, {clip.path.name}",
        sha256=file_sha256(clip.path),
        duration_s=max(0.0, duration) if math.isfinite(duration) else 0,
    )


def _content_version(package: ModelPackage) -> str:
    data = package.model_dump(mode="json", exclude={"version", "created"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
