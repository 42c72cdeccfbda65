"""Train a model package on normal footage: ``train_package`` (``edge train``), or ``train_from_inputs`` for
footage already in memory. Needs torch.

    decode each normal input (``footage``) ─► last ``HOLDOUT`` of each input kept aside
    train the video, temporal and audio predictors on the rest, within the time budget, fixed seeds
    (``train_video``, ``train_temporal``, ``train_audio``)
    export each to ONNX ─► score the held-out part through the runtime path (VideoScorer / AudioScorer on the
    onnxruntime engine) ─► fit the calibrations (``calibrate``) ─► write the package atomically: tmp dir, then
    rename (``packaging``)

The sizes, rates and windows all stages share are the recipe (``pipeline.models.recipe``). The names other code
imports from here (the stages' entry points and the recipe's sizes) are re-exported.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pipeline.models.calibrate import FEW_HELDOUT_S, MAX_MARGIN, MIN_CALIBRATION, heldout_seconds
from pipeline.models.footage import (
    FULL_RATE_MAX_S,
    MAX_FOOTAGE_S,
    FootagePlan,
    NormalInput,
    decode,
    decode_pieces,
    frame_step,
    plan_footage,
    probe_input,
    read_footage,
    source_sha256,
)
from pipeline.models.package import TemporalModelSpec, VideoModelSpec
from pipeline.models.packaging import (
    _export_audio,
    _export_temporal,
    _export_video,
    check_writable,
    write_package,
)
from pipeline.models.recipe import (
    CONTEXT,
    FPS,
    GAP,
    HEIGHT,
    HOLDOUT,
    OVERSAMPLE,
    SAMPLE_RATE,
    TEMPORAL_WINDOW,
    WIDTH,
    WINDOW_S,
    heldout_start,
    split_roles,
    trained_part,
    whole_inputs_held,
)
from pipeline.models.train_audio import train_audio
from pipeline.models.train_temporal import _window_indices, train_temporal
from pipeline.models.train_video import _stack_indices, train_video

__all__ = [
    "CONTEXT",
    "FPS",
    "FULL_RATE_MAX_S",
    "GAP",
    "HEIGHT",
    "HOLDOUT",
    "MAX_FOOTAGE_S",
    "MAX_MARGIN",
    "OVERSAMPLE",
    "SAMPLE_RATE",
    "WIDTH",
    "FootagePlan",
    "NormalInput",
    "decode",
    "decode_pieces",
    "default_threads",
    "frame_step",
    "heldout_seconds",
    "plan_footage",
    "probe_input",
    "source_sha256",
    "train_audio",
    "train_from_inputs",
    "train_package",
    "train_temporal",
    "train_video",
    "trained_part",
]

log = logging.getLogger(__name__)

VIDEO_SHARE = 0.75  # of the time budget, when both models train (the temporal model's share included)
TEMPORAL_SHARE = 0.15  # of the video share


def default_threads() -> int:
    """Torch threads for training: the cores this process may use, at most 8 (these small convolutions and GRUs
    stop gaining beyond that). 2 on the 2-core machines this was sized on; more steps in the same ``--minutes``
    on a bigger machine (the seed still fixes the data order; float sums may differ in the last bits)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 2
    try:  # a container's CPU quota (cgroup v2 "quota period"; "max": none) counts, not the host's cores
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, min(8, cores))


def train_package(
    normal: list[str],
    out: Path,
    *,
    minutes: float = 5,
    seed: int = 0,
    progress: bool = True,
    video: bool = True,
    audio: bool = True,
    package_id: str | None = None,
    threads: int | None = None,
    input_fps: float | None = None,
    temporal: bool = True,
    record_s: float = 300.0,
    record_dir: Path | None = None,
) -> dict[str, Any]:
    """Train, export, calibrate and write a package to ``out``; returns a report (losses, calibration,
    timings). ``input_fps``: the rate image-sequence inputs were taken at (default ``DEFAULT_IMAGE_FPS``);
    ``record_s``: how much of a live camera's stream to record and learn from, into ``record_dir`` (default:
    ``<out>-recordings`` beside the package; ``report["recordings"]``: camera URL without password -> file)."""
    if not normal:
        raise ValueError("no normal inputs given")
    if not (video or audio):
        raise ValueError("nothing to train: both video and audio are off")
    t0 = time.monotonic()
    check_writable(Path(out))  # before minutes of recording, decoding and training, not after
    recordings: dict[str, str] = {}
    inputs, plans = read_footage(
        normal,
        video=video,
        audio=audio,
        input_fps=input_fps,
        record_s=record_s,
        progress=progress,
        record_dir=Path(out).with_name(Path(out).name + "-recordings") if record_dir is None else Path(record_dir),
        recordings=recordings,
    )
    decode_s = time.monotonic() - t0
    report = train_from_inputs(
        inputs,
        out,
        minutes=minutes,
        seed=seed,
        progress=progress,
        video=video,
        audio=audio,
        package_id=package_id,
        threads=threads,
        temporal=temporal,
    )
    report["footage"] = {
        "found_s": round(plans["video"].total_s, 1),
        "video_fps": plans["video"].fps,
        "kept_fraction": round(plans["video"].keep, 4),
    }
    if plans["audio"].total_s:
        report["footage"].update(
            audio_only_s=round(plans["audio"].total_s, 1), audio_only_kept_fraction=round(plans["audio"].keep, 4)
        )
    if recordings:
        report["recordings"] = recordings
    report["timings_s"]["decode"] = round(decode_s, 1)
    report["timings_s"]["total"] = round(time.monotonic() - t0, 1)
    return report


def train_from_inputs(
    inputs: Sequence[NormalInput],
    out: Path,
    *,
    minutes: float = 5,
    seed: int = 0,
    progress: bool = True,
    video: bool = True,
    audio: bool = True,
    package_id: str | None = None,
    threads: int | None = None,
    temporal: bool = True,
) -> dict[str, Any]:
    """``train_package`` after decoding: for inputs already in memory (tests, synthetic footage)."""
    if not (video or audio):
        raise ValueError("nothing to train: both video and audio are off")
    out = Path(out)
    threads = default_threads() if threads is None else max(1, threads)
    torch.set_num_threads(threads)
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"timings_s": timings, "threads": threads}
    t0 = time.monotonic()
    v_inputs, a_inputs = _usable_inputs(inputs, video=video, audio=audio)
    do_video, do_audio = bool(v_inputs), bool(a_inputs)
    report["heldout_s"] = held = heldout_seconds(v_inputs, a_inputs)
    report["heldout"] = {
        kind: (
            "whole inputs: " + ", ".join(x.source.name for x in xs if x.role == "heldout")
            if whole_inputs_held(xs)
            else f"the last {100 * HOLDOUT:.0f} % of each input"
        )
        for kind, xs in (("video", v_inputs), ("audio", a_inputs))
        if xs
    }
    few = {kind: s for kind, s in held.items() if s < FEW_HELDOUT_S}
    if few:
        log.warning(
            "calibrating on %s of held-out normal footage (%s): a calibrated 3 (1 in 1000 normal frames) "
            "is extrapolated from few scores, and normal footage reaches it more often; give %.1f min or more "
            "of footage",
            " and ".join(f"{s:.0f} s of {k}" for k, s in few.items()),
            "; ".join(report["heldout"][k] for k in few),
            FEW_HELDOUT_S / HOLDOUT / 60,
        )
    report["inputs"] = {  # an input kept in pieces (see FootagePlan) is named once
        "video": list(dict.fromkeys(x.source.name for x in v_inputs)),
        "audio": list(dict.fromkeys(x.source.name for x in a_inputs)),
    }
    budget = minutes * 60.0
    video_s = budget * (VIDEO_SHARE if do_audio else 1.0)
    audio_s = budget - video_s if do_video else budget

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        video_spec = audio_spec = temporal_spec = None
        if do_video:
            video_spec, temporal_spec = _video_models(
                v_inputs, video_s, tmp, report, temporal=temporal, seed=seed, progress=progress
            )
        if do_audio:
            t = time.monotonic()
            amodel, mean, std, report["audio"] = train_audio(a_inputs, audio_s, seed=seed, progress=progress)
            timings["train_audio"] = round(time.monotonic() - t, 1)
            audio_spec = _export_audio(amodel, mean, std, tmp, a_inputs, report["audio"], timings)
        package = write_package(tmp, out, inputs, video_spec, audio_spec, temporal_spec, package_id=package_id)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    timings["total"] = round(time.monotonic() - t0, 1)
    report.update(package=str(out), package_id=package.package_id, version=package.version)
    report["size_bytes"] = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return report


def _usable_inputs(
    inputs: Sequence[NormalInput], *, video: bool, audio: bool
) -> tuple[list[NormalInput], list[NormalInput]]:
    """The inputs each model learns from (video, audio): those with enough of its modality, a WAV beside a clip
    adding sound only; the others are named in a warning. Raises ``ValueError`` when neither model can learn."""
    v_inputs = [x for x in inputs if len(x.frames) >= (CONTEXT * x.step + 1) / HOLDOUT] if video else []
    a_inputs = [x for x in inputs if len(x.audio) >= SAMPLE_RATE * WINDOW_S / HOLDOUT] if audio else []
    for kind, wanted, used, has in (
        ("video", video, v_inputs, [len(x.frames) > 0 for x in inputs]),
        ("audio", audio, a_inputs, [len(x.audio) > 0 for x in inputs]),
    ):
        short = list(
            dict.fromkeys(
                x.source.name for x, h in zip(inputs, has, strict=True) if h and all(x is not u for u in used)
            )
        )
        if wanted and short:
            log.warning(
                "%s of %s too short to learn from (needs %.0f s)",
                kind,
                ", ".join(short),
                (CONTEXT / FPS + 0.2) / HOLDOUT if kind == "video" else WINDOW_S / HOLDOUT,
            )
    # many inputs: whole ones held out for the calibration; few: each one's tail (recipe.split_roles)
    v_inputs, a_inputs = split_roles(v_inputs), split_roles(a_inputs)
    held_stacks = sum(
        len(_stack_indices(len(x.frames), heldout_start(x, len(x.frames)), len(x.frames), x.step)) for x in v_inputs
    )
    if v_inputs and held_stacks < MIN_CALIBRATION:
        log.warning(
            "not training a video model: the held-out %.0f%% of the video gives %d sequences to calibrate "
            "on, %d needed (give more footage)",
            100 * HOLDOUT,
            held_stacks,
            MIN_CALIBRATION,
        )
        v_inputs = []
    if not (v_inputs or a_inputs):
        raise ValueError(
            "the normal inputs are too short to train anything (video needs "
            f"{(CONTEXT / FPS + 0.2) / HOLDOUT:.0f} s, audio {WINDOW_S / HOLDOUT:.0f} s)"
            if any(len(x.frames) or len(x.audio) for x in inputs)
            else "the normal inputs have neither video nor audio that this model can learn from"
        )
    return v_inputs, a_inputs


def _video_models(
    inputs: Sequence[NormalInput],
    video_s: float,
    tmp: Path,
    report: dict[str, Any],
    *,
    temporal: bool,
    seed: int,
    progress: bool,
) -> tuple[VideoModelSpec, TemporalModelSpec | None]:
    """The video model trained, exported into ``tmp`` and calibrated within ``video_s``, then the temporal model on
    its embeddings within its share (unless off, or the held-out video is too short to calibrate it)."""
    timings = report["timings_s"]
    t = time.monotonic()
    held_windows = sum(
        len(_window_indices(len(x.frames), heldout_start(x, len(x.frames)), len(x.frames), x.step)) for x in inputs
    )
    if temporal and held_windows < MIN_CALIBRATION:
        log.warning(
            "not training a temporal model: the held-out video gives %d windows of %.0f s to "
            "calibrate on, %d needed (give more footage)",
            held_windows,
            TEMPORAL_WINDOW / FPS,
            MIN_CALIBRATION,
        )
        temporal = False
    temporal_s = video_s * TEMPORAL_SHARE if temporal else 0.0
    vmodel, report["video"], embeddings = train_video(inputs, video_s - temporal_s, seed=seed, progress=progress)
    timings["train_video"] = round(time.monotonic() - t, 1)
    video_spec = _export_video(vmodel, tmp, inputs, report["video"], timings)
    if not temporal:
        return video_spec, None
    t = time.monotonic()
    tmodel, report["temporal"] = train_temporal(inputs, embeddings, temporal_s, seed=seed, progress=progress)
    timings["train_temporal"] = round(time.monotonic() - t, 1)
    return video_spec, _export_temporal(tmodel, tmp, inputs, embeddings, video_spec, report["temporal"], timings)
