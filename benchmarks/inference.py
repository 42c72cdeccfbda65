#!/usr/bin/env python3
"""Inference speed, ONNX Runtime vs torch eager on CPU, per frame and per batch (batch 1, 4, 8), on the graphs of a
model package. Target (DESIGN.md): ONNX Runtime at least 1.5x torch eager, same thread count.

    .venv/bin/python benchmarks/inference.py [--model pipeline/models/default] [--threads 1] [--json]

Same measurement as ``edge bench-engines`` (``pipeline.engines.benchmark``). Run it on an otherwise idle machine: the
figures are wall-clock medians.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from pipeline.engines.benchmark import bench, table, to_json
    from pipeline.engines.ort import OrtEngine
    from pipeline.engines.torch_ref import TorchEngine

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "pipeline" / "models" / "default")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=2.0, help="measuring time per engine and batch size")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    graphs = {g.stem: g for g in sorted(args.model.glob("*.onnx"))}
    ort_name, torch_name = f"onnxruntime cpu {args.threads}t", f"torch eager cpu {args.threads}t"
    engines = {
        ort_name: lambda: OrtEngine(args.threads),
        torch_name: lambda: TorchEngine(args.threads, device="cpu", precision="fp32"),
    }
    rows = bench(graphs, engines, args.batches, seconds=args.seconds,
                 progress=None if args.json else lambda s: print(f"  {s}", file=sys.stderr))
    if args.json:
        print(to_json(rows, model=str(args.model), threads=args.threads))
    else:
        print(table(rows, baseline=torch_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
