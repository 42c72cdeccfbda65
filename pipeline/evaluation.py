"""Detection quality of a model package on labelled clips: frame-level ROC-AUC per modality, causally scored.

numpy only. Each clip is decoded with ``read_media`` at the package's rates and scored through the runtime
path (``VideoScorer`` / ``AudioScorer`` on an engine), exactly as the daemon would: a video frame is scored
once its ``context`` past frames exist, with no per-clip normalisation. Ground truth is ``<clip>.json`` beside
the clip: ``{"anomalies": [{"start", "end", "modalities": [...], "kind"}], "duration_s", ...}``. A video frame
is anomalous when its pts lies in an interval whose modalities include video; an audio window when it overlaps
an audio interval by at least half of the shorter of the two. A frame-difference baseline (worst patch of the
absolute difference to the previous frame, same patches) is scored alongside as the floor to beat.

    python -m pipeline.evaluation --package samples/models/default samples/test_*.mkv samples/normal_eval.mkv
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.engines import create_engine
from pipeline.frames import AudioWindow, VideoFrame
from pipeline.models.package import ModelPackage
from pipeline.scorer import AudioScorer, VideoScorer


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); nan without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average rank over each run of tied scores
    bounds = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(s)]))
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass
class ClipScores:
    name: str
    video_pts: list[float] = field(default_factory=list)
    video_raw: list[float] = field(default_factory=list)
    video_baseline: list[float] = field(default_factory=list)
    audio_span: list[tuple[float, float]] = field(default_factory=list)
    audio_raw: list[float] = field(default_factory=list)


def _frame_difference(stack: np.ndarray, patch: int, stride: int) -> float:
    d = np.abs(stack[-1].astype(np.float32) - stack[-2].astype(np.float32))
    win = np.lib.stride_tricks.sliding_window_view(d, (patch, patch))[::stride, ::stride]
    return float(win.mean(axis=(-1, -2)).max())


def score_clip(
    path: str, package: ModelPackage, video: VideoScorer | None, audio: AudioScorer | None, batch: int = 32
) -> ClipScores:
    from pipeline.sources import read_media

    out = ClipScores(Path(path).name)
    v, a = package.video, package.audio
    ring: deque[np.ndarray] = deque(maxlen=(video.context + 1) if video else 1)
    stacks: list[np.ndarray] = []
    windows: list[np.ndarray] = []

    def flush_video() -> None:
        if stacks and video is not None:
            raw, _ = video.score(np.stack(stacks))
            out.video_raw.extend(raw.tolist())
            stacks.clear()

    def flush_audio() -> None:
        if windows and audio is not None:
            out.audio_raw.extend(audio.score(np.stack(windows)).tolist())
            windows.clear()

    for item in read_media(
        path,
        width=v.width if v else 160,
        height=v.height if v else 96,
        fps=v.fps if v else 5.0,
        audio_window_s=a.window_s if a else 1.0,
        audio_hop_s=a.hop_s if a else 0.5,
        sample_rate=a.sample_rate if a else 16000,
        video=video is not None,
        audio=audio is not None,
    ):
        if isinstance(item, VideoFrame) and video is not None and v is not None:
            ring.append(item.luma)
            if len(ring) == ring.maxlen:
                stack = np.stack(ring)
                stacks.append(stack)
                out.video_pts.append(item.pts)
                out.video_baseline.append(_frame_difference(stack, v.patch, v.patch_stride))
                if len(stacks) >= batch:
                    flush_video()
        elif isinstance(item, AudioWindow) and audio is not None and len(item.samples) == audio.n_samples:
            windows.append(item.samples)
            out.audio_span.append((item.pts, item.pts + item.duration))
            if len(windows) >= batch:
                flush_audio()
    flush_video()
    flush_audio()
    return out


def _intervals(path: str, modality: str) -> list[tuple[float, float]]:
    gt = Path(path).with_suffix(".json")
    if not gt.is_file():
        return []
    data = json.loads(gt.read_text())
    return [
        (float(x["start"]), float(x["end"])) for x in data.get("anomalies", []) if modality in x["modalities"]
    ]


def _video_labels(pts: Sequence[float], intervals: list[tuple[float, float]]) -> np.ndarray:
    p = np.asarray(pts)
    return np.array([any(s <= t < e for s, e in intervals) for t in p], dtype=bool)


def _audio_labels(spans: Sequence[tuple[float, float]], intervals: list[tuple[float, float]]) -> np.ndarray:
    labels = []
    for a, b in spans:
        labels.append(any(min(b, e) - max(a, s) >= 0.5 * min(b - a, e - s) for s, e in intervals))
    return np.array(labels, dtype=bool)


def evaluate(
    clips: Sequence[str], package: ModelPackage, engine_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Score ``clips`` and return per-modality AUC (pooled over clips and per clip) and normal exceedance
    rates."""
    cfg = engine_config or {"type": "onnxruntime"}
    video = audio = None
    if package.video is not None:
        e = create_engine(cfg)
        e.load(package.graph_path("video"))
        video = VideoScorer(package, e)
    if package.audio is not None:
        e = create_engine(cfg)
        e.load(package.graph_path("audio"))
        audio = AudioScorer(package, e)
    report: dict[str, Any] = {"clips": {}}
    pooled: dict[str, list[np.ndarray]] = {k: [] for k in ("v_raw", "v_base", "v_y", "a_raw", "a_y")}
    for path in clips:
        sc = score_clip(path, package, video, audio)
        v_y = _video_labels(sc.video_pts, _intervals(path, "video"))
        a_y = _audio_labels(sc.audio_span, _intervals(path, "audio"))
        clip: dict[str, Any] = {}
        if video is not None:
            v_cal = video.calibrate(np.asarray(sc.video_raw))
            clip["video"] = {
                "frames": len(v_y),
                "anomalous": int(v_y.sum()),
                "auc": roc_auc(np.asarray(sc.video_raw), v_y),
                "baseline_auc": roc_auc(np.asarray(sc.video_baseline), v_y),
                "normal_rate_ge_3": float(np.mean(v_cal[~v_y] >= 3.0)) if (~v_y).any() else float("nan"),
                "anomalous_rate_ge_3": float(np.mean(v_cal[v_y] >= 3.0)) if v_y.any() else float("nan"),
            }
            pooled["v_raw"].append(np.asarray(sc.video_raw))
            pooled["v_base"].append(np.asarray(sc.video_baseline))
            pooled["v_y"].append(v_y)
        if audio is not None:
            a_cal = audio.calibrate(np.asarray(sc.audio_raw))
            clip["audio"] = {
                "windows": len(a_y),
                "anomalous": int(a_y.sum()),
                "auc": roc_auc(np.asarray(sc.audio_raw), a_y),
                "normal_rate_ge_3": float(np.mean(a_cal[~a_y] >= 3.0)) if (~a_y).any() else float("nan"),
                "anomalous_rate_ge_3": float(np.mean(a_cal[a_y] >= 3.0)) if a_y.any() else float("nan"),
            }
            pooled["a_raw"].append(np.asarray(sc.audio_raw))
            pooled["a_y"].append(a_y)
        report["clips"][sc.name] = clip
    if pooled["v_y"]:
        y = np.concatenate(pooled["v_y"])
        report["video_auc"] = roc_auc(np.concatenate(pooled["v_raw"]), y)
        report["video_baseline_auc"] = roc_auc(np.concatenate(pooled["v_base"]), y)
    if pooled["a_y"]:
        report["audio_auc"] = roc_auc(np.concatenate(pooled["a_raw"]), np.concatenate(pooled["a_y"]))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.evaluation", description=__doc__.split("\n")[0])
    parser.add_argument("--package", required=True, type=Path)
    parser.add_argument("clips", nargs="+", help="clips with <clip>.json ground truth beside them")
    args = parser.parse_args(argv)
    report = evaluate(args.clips, ModelPackage.load(args.package))
    print(json.dumps(report, indent=1))  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    sys.exit(main())
