#!/usr/bin/env bash
# GPU check: run the inference engines on an NVIDIA GPU and print throughput per batch size against CPU ONNX Runtime,
# in one table, plus an output check of each GPU engine against ONNX Runtime (FP32 on CPU).
#
#   benchmarks/gpu_check.sh [MODEL_DIR]          (default: pipeline/models/default)
#
# Self-contained: needs only python3 with torch (CUDA build), onnx and onnxruntime -- not the project's venv, no
# install (the repository is put on PYTHONPATH; the engine modules import no pydantic). TensorRT rows appear when
# `import tensorrt` works; its engines are built into a temporary cache (first build: tens of seconds per graph).
# Engines: onnxruntime cpu (1 thread and all cores), torch cuda fp32 eager, torch cuda fp16 eager, torch cuda fp16
# with CUDA graphs, tensorrt fp16 (fp32 where the GPU or TensorRT >= 11 has no FP16 build flag). About a minute on an
# H200 (52 s, 2026-11-30), plus TensorRT builds.
# Environment: PYTHON (default python3), SECONDS_PER_POINT (default 0.7), BATCHES (default "1 4 8 16"),
# GPU_CHECK_JSON (also write the rows there as JSON). Exit status 1 when a GPU engine fails or disagrees.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
MODEL="${1:-pipeline/models/default}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec "${PYTHON:-python3}" - "$MODEL" "${SECONDS_PER_POINT:-0.7}" "${BATCHES:-1 4 8 16}" <<'PY'
import json, os, sys, tempfile, time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from pipeline.engines.benchmark import bench, random_inputs, table
from pipeline.engines.ort import OrtEngine
from pipeline.engines.torch_ref import TorchEngine

model, seconds, batches = Path(sys.argv[1]), float(sys.argv[2]), [int(b) for b in sys.argv[3].split()]
graphs = {g.stem: g for g in sorted(model.glob("*.onnx"))}
if not graphs:
    sys.exit(f"gpu_check: no ONNX graphs in {model}")
cuda = torch.cuda.is_available()
try:
    import tensorrt
    trt_version = tensorrt.__version__
except ImportError as e:
    tensorrt, trt_version = None, f"not importable ({e})"
cores = os.cpu_count() or 1
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), onnxruntime {onnxruntime.__version__}, "
      f"tensorrt {trt_version}, {cores} CPU cores")
if cuda:
    major, minor = torch.cuda.get_device_capability(0)
    print(f"GPU: {torch.cuda.get_device_name(0)} (sm {major}.{minor})")
else:
    print("no CUDA device visible to torch: CPU rows only")

largest = max(batches)
engines = {
    "onnxruntime cpu 1t": lambda: OrtEngine(1),
    f"onnxruntime cpu {cores}t": lambda: OrtEngine(cores),
}
if cuda:
    engines.update({
        "torch cuda fp32 eager": lambda: TorchEngine(device="cuda", precision="fp32", cuda_graphs=False),
        "torch cuda fp16 eager": lambda: TorchEngine(device="cuda", precision="fp16", cuda_graphs=False),
        "torch cuda fp16 cuda-graphs": lambda: TorchEngine(device="cuda", precision="fp16", cuda_graphs=True,
                                                           graph_batch_sizes=batches),
    })
trt_cache = Path(tempfile.mkdtemp(prefix="lepton-trt-"))
if cuda and tensorrt is not None:
    from pipeline.engines.tensorrt import TensorRTEngine
    engines["tensorrt fp16"] = lambda: TensorRTEngine(max_batch=largest, precision="fp16", cache_dir=trt_cache,
                                                      build="blocking")

# outputs of each GPU engine against ONNX Runtime fp32 on the same input (batch 3: a padded CUDA graph size)
problems, broken = [], set()
for gname, path in graphs.items():
    ref = OrtEngine(1)
    ref.load(path)
    x = random_inputs(path, 3, seed=1)
    want = ref.infer(x)
    for ename, make in engines.items():
        if ename.startswith("onnxruntime"):
            continue
        t = time.monotonic()
        try:
            e = make()
            e.load(path)
            got = e.infer(x)
            detail = e.describe()
            e.close()
        except Exception as exc:  # report and go on: one broken engine must not hide the others
            problems.append(f"{gname} {ename}: {type(exc).__name__}: {exc}")
            broken.add(ename)
            continue
        for k in want:
            scale = max(1e-6, float(np.abs(want[k]).max()))
            rel = float(np.abs(got[k] - want[k]).max()) / scale
            print(f"check {gname + ' ' + k:<20} {ename:<28} max|diff|/max|ref| = {rel:.2e}  ({detail}, "
                  f"first call {time.monotonic() - t:.1f} s)")
            if rel > (5e-2 if "fp16" in ename else 1e-4):
                problems.append(f"{gname} {ename}: outputs differ from ONNX Runtime by {rel:.2e} of their range")
                broken.add(ename)

for name in broken:  # measured only when they compute the right thing
    del engines[name]
t0 = time.monotonic()
rows = bench(graphs, engines, batches, seconds=seconds,
             progress=lambda s: print(f"  measuring {s}", file=sys.stderr, flush=True))
print()
print(table(rows, baseline="onnxruntime cpu 1t"))
by = {(r.graph, r.engine, r.batch): r.ms_per_batch for r in rows}
for fast in ("torch cuda fp16 cuda-graphs", "tensorrt fp16"):
    ratios = [f"{g} b{b}: {by[(g, 'torch cuda fp32 eager', b)] / by[(g, fast, b)]:.2f}x"
              for g in graphs for b in batches if (g, fast, b) in by and (g, "torch cuda fp32 eager", b) in by]
    if ratios:
        print(f"{fast} vs torch cuda fp32 eager: " + ", ".join(ratios))
print(f"measured in {time.monotonic() - t0:.0f} s; pydantic imported: {'pydantic' in sys.modules}")
if os.environ.get("GPU_CHECK_JSON"):
    Path(os.environ["GPU_CHECK_JSON"]).write_text(
        json.dumps({"rows": [r.__dict__ for r in rows], "problems": problems}, indent=1))
if problems:
    print("PROBLEMS:\n  " + "\n  ".join(problems))
    sys.exit(1)
PY
