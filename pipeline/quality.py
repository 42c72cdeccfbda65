"""The detection quality of a model package on labelled inputs (``edge eval``): per modality and fused, the
frame-level AUC beside the trivial baseline on the same input, the fraction of normal frames or windows at or above
the threshold 3, and event recall and false alarms per hour. Inputs are scored by ``pipeline.evaluation``'s
``score_media`` (the daemon's scoring path) and labelled as its docstring says."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluation import (
    EVENT_LATE_S,
    MediaScores,
    _ended,
    _intervals,
    _window_labels,
    aggregate,
    frame_labels,
    label_intervals,
    roc_auc,
    score_media,
)
from pipeline.models.package import ModelPackage
from pipeline.scoring_model import PackageScorer


def _event_metrics(
    events: list[tuple[float, float, float, list[str]]], intervals: list[tuple[float, float, str]]
) -> dict[str, Any]:
    hit = [any(s < e1 and e0 <= e + EVENT_LATE_S for e0, e1, _, _ in events) for s, e, _ in intervals]
    false = [
        (round(e0, 2), round(e1, 2))
        for e0, e1, _, _ in events
        if not any(s < e1 and e0 <= e + EVENT_LATE_S for s, e, _ in intervals)
    ]
    return {
        "anomalies": len(intervals),
        "recalled": int(sum(hit)),
        "missed": [f"{k} {s:.1f}-{e:.1f}s" for (s, e, k), h in zip(intervals, hit, strict=True) if not h],
        "events": len(events),
        "false_alarms": false,
    }


def _nan_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    ok = np.isfinite(scores)
    return roc_auc(scores[ok], labels[ok])


class _Pooled:
    """Scores and labels per modality over every clip, and each clip's figures."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, key: str, scores: np.ndarray, labels: np.ndarray) -> None:
        ok = np.isfinite(scores)
        self.parts.setdefault(key + "_s", []).append(scores[ok])
        self.parts.setdefault(key + "_y", []).append(labels[ok])

    def modality(
        self, key: str, scores: np.ndarray, labels: np.ndarray, baseline: np.ndarray | None = None
    ) -> dict[str, Any]:
        """One clip's figures for one modality (and its baseline), pooled as well."""
        ok = np.isfinite(scores)
        self.add(key, scores, labels)
        out: dict[str, Any] = {
            "scored": int(ok.sum()),
            "anomalous": int(labels[ok].sum()),
            "auc": _nan_auc(scores, labels),
        }
        if baseline is not None:
            out["baseline_auc"] = _nan_auc(baseline, labels)
            self.add(key + "_baseline", baseline, labels)
        out["normal_rate_ge_3"] = _rate(scores[ok & ~labels])
        out["anomalous_rate_ge_3"] = _rate(scores[ok & labels])
        return out

    def figures(self, report: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The pooled figures into ``report``; the ROC curves' inputs per modality (and baseline)."""
        curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key in ("video", "temporal", "audio", "fused"):
            if key + "_y" not in self.parts:
                continue
            s_all, y_all = np.concatenate(self.parts[key + "_s"]), np.concatenate(self.parts[key + "_y"])
            curves[key] = (s_all, y_all)
            report[f"{key}_auc"] = roc_auc(s_all, y_all)
            report[f"{key}_normal_rate_ge_3"] = _rate(s_all[~y_all])
            report[f"{key}_normal_scored"] = int((~y_all).sum())
            if key + "_baseline_y" in self.parts:
                b_all = np.concatenate(self.parts[key + "_baseline_s"])
                by_all = np.concatenate(self.parts[key + "_baseline_y"])
                curves[key + " baseline"] = (b_all, by_all)
                report[f"{key}_baseline_auc"] = roc_auc(b_all, by_all)
        return curves


Timeline = tuple[MediaScores, np.ndarray, list[tuple[float, float, str]]]


def _clip(
    path: str, sc: MediaScores, scorer: PackageScorer, aggregator: Any, pooled: _Pooled, timelines: list[Timeline]
) -> dict[str, Any]:
    """One clip's report: per modality, fused and events (labels as the module docstring of
    ``pipeline.evaluation`` says)."""
    events, fused = aggregate(sc, aggregator)
    intervals = label_intervals(path, sc)
    clip: dict[str, Any] = {"duration_s": round(sc.duration_s, 2)}
    if sc.has_video:
        y = frame_labels(path, sc, ["video"])
        clip["video"] = pooled.modality("video", sc.video, y, sc.baseline)
        clip["video"]["gated"] = int(sc.video_gated.sum())
        if np.isfinite(sc.temporal).any():
            clip["temporal"] = pooled.modality("temporal", sc.temporal, y)
        y_any = frame_labels(path, sc)
        fused[~np.isfinite(sc.video)] = np.nan  # the same frames as the video AUC
        clip["fused"] = pooled.modality("fused", fused, y_any)
        timelines.append((sc, fused, intervals))
    if sc.has_audio:
        # a window is labelled by the span its score describes (its newest part), not its whole length
        span = np.maximum(sc.audio_start, sc.audio_end - scorer.audio_scored_samples / scorer.sample_rate)
        y = _window_labels(span, sc.audio_end, _intervals(path, ["audio"]))
        clip["audio"] = pooled.modality("audio", sc.audio, y, sc.audio_baseline)
        if not sc.has_video:
            pooled.add("fused", sc.audio, _window_labels(span, sc.audio_end, intervals))
            timelines.append((sc, sc.audio, intervals))
    clip["events"] = _event_metrics(_ended(events, sc.duration_s), intervals)
    return clip


def evaluate(
    clips: Sequence[str],
    package: ModelPackage,
    engine_config: Any = None,
    *,
    motion_threshold: float | None = None,
    aggregator: Any = None,
    input_fps: float | None = None,
    plots: Path | None = None,
) -> dict[str, Any]:
    """Score ``clips`` and report, per modality and fused (pooled over clips and per clip): frame-level AUC, the
    trivial baseline's AUC on the same input (frame difference for video, window RMS level for audio), the fraction
    of normal frames / windows at or above the threshold 3 (the calibration promises 0.1 %); and event recall /
    false alarms per hour. ``plots``: a folder to write PNGs into (ROC curves, each clip's scores over time)."""
    kwargs = {} if motion_threshold is None else {"motion_threshold": motion_threshold}
    scorer = PackageScorer(package, engine_config, **kwargs)
    report: dict[str, Any] = {"clips": {}}
    pooled = _Pooled()
    timelines: list[Timeline] = []
    total_s = 0.0
    try:
        for path in clips:
            sc = score_media(path, scorer, input_fps=input_fps, baseline=True)
            total_s += sc.duration_s
            report["clips"][sc.name] = _clip(path, sc, scorer, aggregator, pooled, timelines)
    finally:
        report["frames_gated"] = scorer.frames_gated
        report["frames_scored"] = scorer.frames_scored
        report["engines"] = scorer.describe_engines()
        scorer.close()
    curves = pooled.figures(report)
    evs = [c["events"] for c in report["clips"].values()]
    anomalies, recalled = sum(e["anomalies"] for e in evs), sum(e["recalled"] for e in evs)
    report["event_recall"] = recalled / anomalies if anomalies else float("nan")
    report["anomalies"] = anomalies
    report["false_alarms"] = false_alarms = sum(len(e["false_alarms"]) for e in evs)
    report["hours"] = round(total_s / 3600.0, 4)
    report["false_alarms_per_hour"] = false_alarms / (total_s / 3600.0) if total_s else float("nan")
    if plots is not None:
        from pipeline.plots import write_plots

        report["plots"] = [str(p) for p in write_plots(plots, curves, timelines)]
    return report


def _rate(cal: np.ndarray, threshold: float = 3.0) -> float:
    return float(np.mean(cal >= threshold)) if len(cal) else float("nan")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A human-readable summary of an ``evaluate`` report."""

    def f(x: Any) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

    lines = [f"{'clip':<18} {'video':>7} {'base':>7} {'temporal':>8} {'audio':>7} {'base':>7} {'fused':>7}  events"]
    for name, c in report["clips"].items():
        ev = c["events"]
        lines.append(
            f"{name:<18} {f(c.get('video', {}).get('auc')):>7} {f(c.get('video', {}).get('baseline_auc')):>7} "
            f"{f(c.get('temporal', {}).get('auc')):>8} {f(c.get('audio', {}).get('auc')):>7} "
            f"{f(c.get('audio', {}).get('baseline_auc')):>7} "
            f"{f(c.get('fused', {}).get('auc')):>7}  {ev['recalled']}/{ev['anomalies']} recalled, "
            f"{len(ev['false_alarms'])} false" + (f" (missed: {', '.join(ev['missed'])})" if ev["missed"] else "")
        )
    lines.append(
        f"{'pooled':<18} {f(report.get('video_auc')):>7} {f(report.get('video_baseline_auc')):>7} "
        f"{f(report.get('temporal_auc')):>8} {f(report.get('audio_auc')):>7} "
        f"{f(report.get('audio_baseline_auc')):>7} {f(report.get('fused_auc')):>7}  "
        f"recall {f(report['event_recall'])}, {report['false_alarms']} false alarm(s) in "
        f"{report['hours'] * 60:.1f} min = {report['false_alarms_per_hour']:.1f}/h"
    )
    rates = [
        f"{k} {100 * report[k + '_normal_rate_ge_3']:.2f}% of {report[k + '_normal_scored']}"
        for k in ("video", "temporal", "audio", "fused")
        if k + "_normal_rate_ge_3" in report
    ]
    if rates:
        lines.append("normal frames / windows scoring >= 3 (the calibration promises 0.1%): " + ", ".join(rates))
    if report.get("frames_scored"):
        lines.append(
            f"motion gate: {report['frames_gated']} of {report['frames_scored']} frames skipped the CNN "
            f"({100.0 * report['frames_gated'] / report['frames_scored']:.1f}%); engines: {report['engines']}"
        )
    return lines
