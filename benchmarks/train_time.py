#!/usr/bin/env python3
"""How long ``edge train`` takes on five minutes of normal 720p footage (issue target: 15 minutes or less here).

The footage: 5 min of 720p25 H.264 (~3 Mbit/s) + AAC 16 kHz, what a typical camera sends, made once with
``edge bench``'s encoder from the generator's normal clips (``normal_train_1`` and ``_2`` whole, the first 60 s of
``normal_train_3``, scaled up with +-2 levels of sensor noise) and cached under ``--cache-dir``. Then
``edge train --normal <the three clips> --out <dir>`` runs with its defaults (``--minutes 5``, the machine's cores)
as a user would start it, and this prints its wall time and peak memory, the phases from its report, and, with
``--eval`` (default on), what the package reads on the samples' test clips (``edge eval``: they are 640x360, the
same scene; the model sees 256x144 either way).

    .venv/bin/python benchmarks/train_time.py [--minutes 5] [--seed 0] [--no-eval] [--json]

Needs the train extra (torch). Run it on an otherwise idle machine: the budget is CPU time shared with whatever
else runs, and decoding and calibration come on top of it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SOURCES = (("normal_train_1", 120.0), ("normal_train_2", 120.0), ("normal_train_3", 60.0))
TARGET_S = 15 * 60.0
TEST_CLIPS = ("test_1", "test_2", "test_3", "normal_eval")


def make_footage(cache: Path, log: Any) -> list[Path]:
    """The 720p clips, made once (each written atomically by the encoder)."""
    from edge.bench_media import CLIP_FPS, CLIP_HEIGHT, CLIP_KBPS, CLIP_VERSION, encode_clip

    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for name, seconds in SOURCES:
        clip = cache / f"{name}-{seconds:.0f}s-{CLIP_HEIGHT}p{CLIP_FPS}-{CLIP_KBPS}k-v{CLIP_VERSION}.mkv"
        if not clip.exists():
            source = ROOT / "samples" / f"{name}.mkv"
            if not source.exists():  # the extra normal clips are made on demand (make model does the same)
                log(f"generating {source.name} (once)")
                subprocess.run([sys.executable, str(ROOT / "samples" / "generate.py"), "--out", str(cache),
                                "--only", name], check=True, stdout=subprocess.DEVNULL)
                source = cache / f"{name}.mkv"
            log(f"scaling {source.name}'s first {seconds:.0f} s up to {CLIP_HEIGHT}p (once)")
            encode_clip(source, clip, seconds)
        out.append(clip)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, help="edge train --minutes (default: edge train's own default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate the package on the samples' test clips (default on)")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "lepton-edge" / "train_time")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    clips = make_footage(args.cache_dir, log)
    model = args.cache_dir / "models" / f"seed{args.seed}"
    edge = Path(sys.executable).with_name("edge")
    cmd = [str(edge), "train", "--normal", *map(str, clips), "--out", str(model), "--seed", str(args.seed), "--json"]
    if args.minutes is not None:
        cmd += ["--minutes", str(args.minutes)]
    log("$ " + " ".join(cmd))
    started = time.monotonic()
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)  # progress goes to stderr
    wall = time.monotonic() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = json.loads(done.stdout)
    row: dict[str, Any] = {
        "footage_s": sum(s for _, s in SOURCES), "resolution": "1280x720", "fps": 25,
        "train_wall_s": round(wall, 1), "target_s": TARGET_S, "met": wall <= TARGET_S,
        "peak_rss_mb": round(peak_kb / 1024), "cores": len(os.sched_getaffinity(0)),
        "load_after": os.getloadavg()[0],
    }
    row["phases_s"] = report.get("timings_s")
    row["footage"] = report.get("footage")
    if args.eval:
        from pipeline.evaluation import evaluate
        from pipeline.models.package import ModelPackage

        result = evaluate([str(ROOT / "samples" / f"{c}.mkv") for c in TEST_CLIPS], ModelPackage.load(model))
        row.update({k: result.get(k) for k in ("video_auc", "temporal_auc", "audio_auc", "fused_auc",
                                               "event_recall", "false_alarms")})
    if args.json:
        print(json.dumps(row, indent=1))
    else:
        for k, v in row.items():
            print(f"{k:>14}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
