"""Calibration of a trained model: its raw scores on held-out normal footage, widened by how much they grew on
footage it had not seen (``_calibrate``), fitted into a ``pipeline.calibration.Calibration`` that maps raw scores to
the package's calibrated scale. Scores come through the runtime's scorers on the exported graph, so the
calibration describes what the daemon computes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from pipeline.calibration import Calibration
from pipeline.engines.ort import OrtEngine
from pipeline.models.footage import NormalInput
from pipeline.models.package import (
    AudioModelSpec,
    ModelPackage,
    TemporalModelSpec,
    TrainedOn,
    VideoModelSpec,
)
from pipeline.models.recipe import FPS, HOLDOUT, SAMPLE_RATE, heldout_start, whole_inputs_held
from pipeline.models.train_audio import _split_audio, heldout_audio, seen_audio
from pipeline.scorer import AudioScorer

# The generalisation margin of the calibration (see ``_calibrate``): held-out vs training-part raw scores compared at
# this quantile, the ratio capped at MAX_MARGIN.
MARGIN_QUANTILE, MAX_MARGIN = 0.99, 4.0
MIN_CALIBRATION = 20  # held-out scores a calibration needs at least
# Held-out normal footage (per kind) below which a calibrated 3 ("1 in 1000 normal frames") is extrapolated from the
# tail of few, overlapping scores, and normal footage reaches it more often (docs/decisions/0002). edge train says so.
FEW_HELDOUT_S = 30.0


def heldout_seconds(video: Sequence[NormalInput], audio: Sequence[NormalInput]) -> dict[str, float]:
    """Seconds of normal footage held out to calibrate on, per kind that will be trained (video, audio)."""
    held = {
        "video": sum((len(x.frames) - heldout_start(x, len(x.frames))) / (FPS * x.step) for x in video),
        "audio": sum(len(x.audio) - heldout_start(x, len(x.audio)) for x in audio) / SAMPLE_RATE,
    }
    return {kind: round(s, 1) for kind, s in held.items() if s > 0}


def margin_from(
    inputs: Sequence[NormalInput], seen: Callable[[int], Iterator[np.ndarray]], kind: str
) -> Callable[[int], Iterator[np.ndarray]] | None:
    """What ``_calibrate`` measures the generalisation margin with: the trained-on part (``seen``) when the held-out
    part is each input's tail, or when the whole inputs held out give less than ``FEW_HELDOUT_S`` of ``kind``
    (video, audio): a calibrated 3 from so few scores is an extrapolation, widened like a tail's. Nothing when
    whole inputs give enough: they are already footage the model has not seen (their scores need no widening)."""
    if not whole_inputs_held(inputs):
        return seen
    return seen if heldout_seconds(inputs, inputs).get(kind, 0.0) < FEW_HELDOUT_S else None


def _placeholder_calibration() -> Calibration:
    return Calibration.fit(np.linspace(0.0, 1.0, 100))


def _scratch_package(
    video: VideoModelSpec | None, audio: AudioModelSpec | None, temporal: TemporalModelSpec | None = None
) -> ModelPackage:
    return ModelPackage(
        package_id="calibrating",
        version="0",
        created="",
        video=video,
        audio=audio,
        temporal=temporal,
        trained_on=TrainedOn(sources=[], duration_s=0, holdout_fraction=HOLDOUT),
        versions={},
    )


def _calibrate(
    score: Callable[[np.ndarray], np.ndarray],
    batches: Iterator[np.ndarray],
    seen: Callable[[int], Iterator[np.ndarray]] | None = None,
) -> tuple[Calibration, dict]:
    """Fit a calibration on the raw scores of held-out normal ``batches``, widened by the generalisation margin.

    The held-out part is footage of the same days as the training part, so the model's scores on it are lower
    than on the weeks that follow. ``seen(n)`` gives about ``n`` items of the training part: the ratio of the
    held-out to the training part's high quantile (``MARGIN_QUANTILE``) is how much the scores grew on footage the
    model had not seen; the fit assumes new footage is as far again from the held-out part and scales the held-out
    scores by that ratio (1 to ``MAX_MARGIN``) before fitting. Little footage, a model that learnt its training part
    by heart: a wide margin; plenty of footage and a model that generalises: close to 1."""
    raw = np.concatenate([score(b) for b in batches])
    margin, seen_q = 1.0, float("nan")
    if seen is not None:
        seen_raw = np.concatenate([score(b) for b in seen(raw.size)])
        seen_q = float(np.quantile(seen_raw, MARGIN_QUANTILE))
        held_q = float(np.quantile(raw, MARGIN_QUANTILE))
        if seen_q > 0 and held_q > seen_q:
            margin = min(MAX_MARGIN, held_q / seen_q)
    cal = Calibration.fit(raw * margin)
    q = np.quantile(raw, [0.5, 0.9, 0.99, 1.0])
    heldout_rate = float(np.mean(cal.calibrate(raw) >= 3.0))
    return cal, {
        "n": int(raw.size),
        "raw_quantiles": {k: float(v) for k, v in zip(("p50", "p90", "p99", "max"), q, strict=True)},
        "seen_quantile": seen_q,
        "margin": round(margin, 4),
        "heldout_rate_ge_3": heldout_rate,
        "raw_threshold_at": {str(c): round(cal.raw_threshold(c), 6) for c in (2.0, 3.0, 4.0)},
        "calibration": cal.describe(),
    }


def calibrate_audio(spec: AudioModelSpec, graph: Path, inputs: Sequence[NormalInput], report: dict) -> AudioModelSpec:
    """``spec`` with its calibration fitted on the held-out part of ``inputs``, scored through ``graph`` as
    ``spec`` says (window, skip, top-k); the fit's figures go in ``report["calibration"]``."""
    engine = OrtEngine()
    engine.load(graph)
    try:
        scorer = AudioScorer(_scratch_package(None, spec), engine)
        # a finer hop than the runtime's: more (overlapping) windows for the tail fit, same per-window
        # computation; finer still for short inputs, so that there are enough windows to fit at all
        held = min(len(h) for h in (_split_audio(x)[1] for x in inputs) if len(h))
        finer = round(spec.hop_s * spec.sample_rate / 4)
        hop = max(spec.features.hop_length, min(finer, (held - spec.n_samples) // 40))
        cal, report["calibration"] = _calibrate(
            scorer.score,
            heldout_audio(inputs, spec.n_samples, hop),
            margin_from(inputs, lambda n: seen_audio(inputs, spec.n_samples, n), "audio"),
        )
    finally:
        engine.close()
    return spec.model_copy(update={"calibration": cal})
