"""Pictures of an evaluation (``edge eval --plots DIR``): ROC curves of each modality beside its trivial baseline,
and each input's scores over time with its labelled intervals shaded and the threshold drawn. matplotlib (the
``train`` extra), imported only here; PNG files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.evaluation import MediaScores

THRESHOLD = 3.0


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1); ties move together."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the end of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PipelineError("--plots needs matplotlib: pip install matplotlib (or the train extra)") from exc
    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80] or "input"


def write_plots(
    out: Path,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    timelines: Sequence[tuple[MediaScores, np.ndarray, list[tuple[float, float, str]]]],
) -> list[Path]:
    """``curves``: name → (scores, labels) pooled over the inputs; ``timelines``: per input its scores, the fused
    (or audio) score at each scored time and its labelled intervals. Returns the files written."""
    from pipeline.evaluation import roc_auc

    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    fig, ax = plt.subplots(figsize=(5.5, 5.0))
    for name, (s, y) in curves.items():
        if y.all() or not y.any():
            continue
        fpr, tpr = roc_curve(s, y)
        ax.plot(fpr, tpr, ls="--" if "baseline" in name else "-", label=f"{name} (AUC {roc_auc(s, y):.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC, frames / windows pooled")
    ax.legend(loc="lower right", fontsize=8)
    path = out / "roc.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    written.append(path)
    for sc, fused, intervals in timelines:
        fig, ax = plt.subplots(figsize=(10, 3.2))
        for a, b, _ in intervals:
            ax.axvspan(a, b, color="tab:red", alpha=0.15, lw=0)
        if sc.has_video:
            ax.plot(sc.frame_pts, sc.video, lw=0.8, label="video")
            if np.isfinite(sc.temporal).any():
                ok = np.isfinite(sc.temporal)
                ax.plot(sc.frame_pts[ok], sc.temporal[ok], lw=0.8, label="temporal")
        if sc.has_audio:
            ax.plot(sc.audio_centre, sc.audio, lw=0.8, label="audio")
        if sc.has_video:
            ax.plot(sc.frame_pts, fused, lw=1.2, color="black", label="fused")
        ax.axhline(THRESHOLD, color="tab:red", lw=0.8, ls=":", label="threshold")
        ax.set(xlabel="seconds", ylabel="calibrated score", title=sc.name)
        ax.legend(loc="upper right", fontsize=7, ncol=5)
        path = out / f"scores_{_safe(sc.name)}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
