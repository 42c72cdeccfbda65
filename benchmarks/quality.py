#!/usr/bin/env python3
"""Detection quality of a model package on the bundled labelled clips: frame-level ROC-AUC per modality (video,
temporal, audio) and fused, the frame-difference baseline, and event-level recall / false alarms per hour after
the aggregator (default ``AggregatorSettings``). Same as ``edge eval``.

    .venv/bin/python benchmarks/quality.py [--model pipeline/models/default] [clips...] [--json]

Default clips: samples/test_*.mkv and samples/normal_eval.mkv (none of them seen in training).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from pipeline.models.package import ModelPackage
    from pipeline.quality import evaluate, summary_lines

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("clips", nargs="*", help="clips with <clip>.json ground truth beside them")
    p.add_argument("--model", type=Path, default=ROOT / "pipeline" / "models" / "default")
    p.add_argument("--motion-threshold", type=float, default=5.0, help="0: motion gate off")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    clips = args.clips or [str(c) for c in sorted((ROOT / "samples").glob("test_*.mkv"))] + [
        str(ROOT / "samples" / "normal_eval.mkv")
    ]
    report = evaluate(clips, ModelPackage.load(args.model), motion_threshold=args.motion_threshold)
    print(json.dumps(report, indent=1, default=str) if args.json else "\n".join(summary_lines(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
