#!/usr/bin/env python3
"""Detection quality on footage unlike the samples: each variant re-encodes every bundled clip (the normal
training clips and the labelled test clips alike, ground truth unchanged since time is), trains a package on the
variant's normal clips with ``edge train``'s defaults, and reports what ``edge eval`` reports. Needs the train
extra (torch).

    .venv/bin/python benchmarks/robustness.py [--minutes 2] [--only gray43_10fps,noisy] [--json]

Variants:

    as_is          the clips unchanged (the reference, trained with the same budget)
    gray43_10fps   a small grayscale camera: the centre 4:3 of the picture at 320x240, 10 fps (every 2.5th frame),
                   no chroma
    noisy          sensor noise on every pixel (Gaussian, σ 6 levels, new each frame) and a hiss under the sound
                   (white noise 20 dB below the normal ambience's level)
    dusk_lowbit    a dim scene at a low bit rate: the picture at 35 % of its brightness (+8 levels of black),
                   sensor noise σ 3, H.264 at CRF 32 (blocky, smeared detail: the video at ~13 kbit/s, the bundled
                   clips' at ~100)

Re-encoded clips are cached under ``--cache-dir`` (default ``~/.cache/lepton-edge/robustness``), keyed by the
variant and the source clip's size and mtime. Nothing here changes the pipeline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NORMAL = ("normal_train_1", "normal_train_2")
LABELLED = ("test_1", "test_2", "test_3", "normal_eval")
AUDIO_RATE = 16000


class Variant:
    def __init__(
        self,
        name: str,
        *,
        size: tuple[int, int] | None = None,
        fps: int | None = None,
        gray: bool = False,
        crop43: bool = False,
        noise_sigma: float = 0.0,
        hiss_db: float | None = None,
        gain: float = 1.0,
        black: float = 0.0,
        crf: int = 20,
    ) -> None:
        self.name, self.size, self.fps, self.gray, self.crop43 = name, size, fps, gray, crop43
        self.noise_sigma, self.hiss_db = noise_sigma, hiss_db
        self.gain, self.black, self.crf = gain, black, crf

    @property
    def identity(self) -> bool:
        return not (self.size or self.fps or self.gray or self.crop43 or self.noise_sigma or self.hiss_db
                    or self.gain != 1.0 or self.black or self.crf != 20)


VARIANTS = {
    v.name: v
    for v in (
        Variant("as_is"),
        Variant("gray43_10fps", size=(320, 240), fps=10, gray=True, crop43=True),
        Variant("noisy", noise_sigma=6.0, hiss_db=-20.0),
        Variant("dusk_lowbit", gain=0.35, black=8.0, noise_sigma=3.0, crf=32),
    )
}


def _picture(frame: Any, v: Variant, rng: np.random.Generator) -> np.ndarray:
    img = frame.to_ndarray(format="gray" if v.gray else "rgb24")
    if v.crop43:
        h, w = img.shape[:2]
        cw = min(w, h * 4 // 3)
        x0 = (w - cw) // 2
        img = img[:, x0 : x0 + cw]
    if v.gain != 1.0 or v.black or v.noise_sigma:
        level = img.astype(np.float32) * v.gain + v.black
        if v.noise_sigma:
            level += rng.normal(0.0, v.noise_sigma, img.shape).astype(np.float32)
        img = np.clip(np.rint(level), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def _mono16k(container: Any) -> np.ndarray:
    import av

    if not container.streams.audio:
        return np.zeros(0, np.float32)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
    parts = []
    for frame in container.decode(audio=0):
        for out in resampler.resample(frame):
            parts.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
        parts.append(out.to_ndarray().reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def transcode(src: Path, dst: Path, v: Variant, seed: int) -> None:
    """``src`` re-encoded as ``v`` into ``dst`` (H.264 + 16-bit PCM in Matroska), written atomically."""
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(src)) as inp:
        sound = _mono16k(inp)
    if len(sound) and v.hiss_db is not None:
        level = float(np.sqrt(np.mean(sound.astype(np.float64) ** 2)))
        sound = sound + rng.normal(0.0, level * 10 ** (v.hiss_db / 20), sound.shape).astype(np.float32)
    pcm = np.clip(np.rint(sound * 32767.0), -32768, 32767).astype(np.int16)
    tmp = dst.with_name(f".{dst.name}.tmp")
    with av.open(str(src)) as inp, av.open(str(tmp), "w", format="matroska") as out:
        vin = inp.streams.video[0]
        src_fps = Fraction(vin.average_rate or 25)
        fps = Fraction(v.fps) if v.fps else src_fps
        vout = None
        emitted = 0
        for frame in inp.decode(video=0):
            t = float(frame.pts * frame.time_base) if frame.pts is not None else emitted / float(src_fps)
            if t + 1e-6 < emitted / float(fps):  # a lower rate: keep the frames nearest each new period
                continue
            img = _picture(frame, v, rng)
            if v.size:
                fmt = "gray" if img.ndim == 2 else "rgb24"
                img = av.VideoFrame.from_ndarray(img, format=fmt).reformat(
                    width=v.size[0], height=v.size[1], interpolation="AREA").to_ndarray()
            if vout is None:  # every stream exists before the first packet is written
                vout = out.add_stream("libx264", rate=fps)
                vout.height, vout.width = img.shape[:2]
                vout.pix_fmt = "yuv420p"
                vout.options = {"preset": "veryfast", "crf": str(v.crf)}
                if len(pcm):
                    aout = out.add_stream("pcm_s16le", rate=AUDIO_RATE)
                    aout.layout = "mono"
            vf = av.VideoFrame.from_ndarray(img, format="gray" if img.ndim == 2 else "rgb24")
            vf.pts = emitted
            vf.time_base = 1 / fps
            for p in vout.encode(vf):
                out.mux(p)
            emitted += 1
        if vout is not None:
            for p in vout.encode(None):
                out.mux(p)
        if vout is not None and len(pcm):
            for k in range(0, len(pcm), 1024):
                af = av.AudioFrame.from_ndarray(pcm[None, k : k + 1024], format="s16", layout="mono")
                af.sample_rate, af.pts = AUDIO_RATE, k
                for p in aout.encode(af):
                    out.mux(p)
            for p in aout.encode(None):
                out.mux(p)
    tmp.replace(dst)


def prepare(v: Variant, cache: Path, log: Callable[[str], None]) -> dict[str, Path]:
    """The variant's clips (ground truth beside the labelled ones), made once."""
    clips: dict[str, Path] = {}
    folder = cache / v.name
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(NORMAL + LABELLED):
        src = ROOT / "samples" / f"{name}.mkv"
        if v.identity:
            clips[name] = src
            continue
        st = src.stat()
        dst = folder / f"{name}-{st.st_size}-{int(st.st_mtime)}.mkv"
        if not dst.exists():
            t = time.monotonic()
            transcode(src, dst, v, seed=1000 + i)
            log(f"{v.name}: {name} re-encoded in {time.monotonic() - t:.0f} s")
        truth = src.with_suffix(".json")
        if truth.exists():
            shutil.copyfile(truth, dst.with_suffix(".json"))
        clips[name] = dst
    return clips


def run_variant(v: Variant, cache: Path, minutes: float, log: Callable[[str], None]) -> dict[str, Any]:
    from pipeline.models.package import ModelPackage
    from pipeline.models.train import train_package
    from pipeline.quality import evaluate

    clips = prepare(v, cache, log)
    out = cache / "models" / v.name
    t = time.monotonic()
    train_package([str(clips[n]) for n in NORMAL], out, minutes=minutes, progress=False)
    trained_s = time.monotonic() - t
    log(f"{v.name}: trained in {trained_s:.0f} s")
    report = evaluate([str(clips[n]) for n in LABELLED], ModelPackage.load(out))
    keys = ("video_auc", "temporal_auc", "audio_auc", "fused_auc", "video_baseline_auc", "event_recall",
            "false_alarms", "false_alarms_per_hour")
    row = {k: report.get(k) for k in keys}
    row["train_s"] = round(trained_s, 1)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=2.0, help="training budget per variant (edge train --minutes)")
    p.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "lepton-edge" / "robustness")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rows = {n: run_variant(VARIANTS[n], args.cache_dir, args.minutes, log) for n in names}
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0

    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)

    print(f"{'variant':<14} {'video':>6} {'temp':>6} {'audio':>6} {'fused':>6} {'base':>6}  events")
    for n, r in rows.items():
        print(f"{n:<14} {f(r['video_auc']):>6} {f(r['temporal_auc']):>6} {f(r['audio_auc']):>6} "
              f"{f(r['fused_auc']):>6} {f(r['video_baseline_auc']):>6}  recall {f(r['event_recall'])}, "
              f"{r['false_alarms']} false alarm(s) ({f(r['false_alarms_per_hour'])}/h), trained {r['train_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
