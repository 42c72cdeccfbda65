"""Inference speed of engines on a package's graphs: latency per batch and per item, throughput, per batch size.

Used by ``benchmarks/inference.py`` (CPU: ONNX Runtime vs torch eager), ``edge bench-engines`` and
``benchmarks/gpu_check.sh`` (GPU engines against CPU ONNX Runtime). Inputs are random but of the graph's exact
shape and dtype (the time axis of the audio graph is the package's window). Each measurement runs warm-up calls
first (CUDA graph capture, TensorRT builds happen there), then repeats until ``seconds`` have passed, and reports
the median and p90 of the wall time per call. No pydantic here: engines are passed in already built.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.engines.interface import Engine

# dynamic non-batch dimensions of our graphs: the audio graph's time axis is 1 s of 10 ms frames
DEFAULT_TIME_STEPS = 98


@dataclass(frozen=True)
class BenchRow:
    graph: str
    engine: str
    batch: int
    ms_per_batch: float  # median
    p90_ms: float
    ms_per_item: float
    items_per_s: float
    calls: int


def random_inputs(
    graph: str | Path, batch: int, *, time_steps: int = DEFAULT_TIME_STEPS, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random inputs of ``graph``'s declared shapes (batch ``batch``) and dtypes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(graph), sess_options=opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i in sess.get_inputs():
        dims = [batch if k == 0 else (d if isinstance(d, int) else time_steps) for k, d in enumerate(i.shape)]
        if i.type == "tensor(uint8)":
            out[i.name] = rng.integers(0, 256, dims, dtype=np.uint8)
        else:
            out[i.name] = rng.normal(0, 1, dims).astype(np.float32)
    return out


def measure(
    engine: Engine,
    inputs: Mapping[str, np.ndarray],
    *,
    seconds: float = 1.0,
    warmup: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float, int]:
    """(median ms, p90 ms, calls) of ``engine.infer(inputs)``."""
    for _ in range(warmup):
        engine.infer(inputs)
    times: list[float] = []
    end = clock() + seconds
    while clock() < end or len(times) < 5:
        t = clock()
        engine.infer(inputs)
        times.append((clock() - t) * 1000.0)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))], len(times)


def bench(
    graphs: Mapping[str, str | Path],
    engines: Mapping[str, Callable[[], Engine]],
    batches: Sequence[int] = (1, 4, 8),
    *,
    seconds: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    """Every engine (a factory, so one loaded engine at a time) on every graph at every batch size."""
    rows: list[BenchRow] = []
    for gname, path in graphs.items():
        for ename, make in engines.items():
            engine = make()
            try:
                engine.load(path)
                for b in batches:
                    if progress is not None:
                        progress(f"{gname} {ename} batch {b}")
                    med, p90, n = measure(engine, random_inputs(path, b), seconds=seconds)
                    rows.append(
                        BenchRow(
                            gname,
                            ename,
                            b,
                            round(med, 3),
                            round(p90, 3),
                            round(med / b, 3),
                            round(1000.0 * b / med, 1),
                            n,
                        )
                    )
            finally:
                engine.close()
    return rows


def table(rows: Sequence[BenchRow], baseline: str | None = None) -> str:
    """Rows as a fixed-width table; with ``baseline`` (an engine name), each row's speed-up over it."""
    base = {(r.graph, r.batch): r.ms_per_batch for r in rows if r.engine == baseline}
    head = f"{'graph':<8} {'engine':<34} {'batch':>5} {'ms/batch':>9} {'p90 ms':>8} {'ms/item':>8} {'items/s':>9}"
    if baseline:
        head += f" {'vs ' + baseline:>16}"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (
            f"{r.graph:<8} {r.engine:<34} {r.batch:>5} {r.ms_per_batch:>9.3f} {r.p90_ms:>8.3f} "
            f"{r.ms_per_item:>8.3f} {r.items_per_s:>9.1f}"
        )
        if baseline:
            ref = base.get((r.graph, r.batch))
            line += f" {ref / r.ms_per_batch:>15.2f}x" if ref else f" {'-':>16}"
        lines.append(line)
    return "\n".join(lines)


def to_json(rows: Sequence[BenchRow], **extra: object) -> str:
    return json.dumps({**extra, "rows": [asdict(r) for r in rows]}, indent=1)
