"""What ``isolation: process`` costs: CPU per camera-second of media, capture on threads vs in child processes.

N cameras replay the benchmark clip (720p25 H.264 ~3 Mbit/s + AAC, see ``edge/bench_media.py``) as fast as they can
through the real ``Runner`` (``CaptureWorker`` → ``MediaReader`` on a thread, or ``ProcessReader`` → a forked
child) into a scorer that does nothing, so that what is measured is capture and what crosses the boundary:
demux + decode, sampled luma at the default model's size and rate, audio windows, and in process mode the
pickling, the pipe and a child's start. CPU is the process's and that of every process below it
(``edge.bench_probes.tree_cpu_seconds``: the capture processes are the fork server's children; each run ends with
them joined and reaped). Rounds alternate the modes and the median is reported, so a busy neighbour weighs on
both alike.

    python benchmarks/isolation.py [--cameras 2] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.bench_probes import tree_cpu_seconds  # noqa: E402

if TYPE_CHECKING:
    from pipeline.models.package import ModelPackage

# A child imports this file again as its __mp_main__, as it imports the ``edge`` script in the daemon:
# the pipeline is imported inside the functions, so that a child's start costs here what it costs there.
DEFAULT_MODEL = ROOT / "pipeline" / "models" / "default"
DEFAULT_CLIP = Path.home() / ".cache" / "lepton-edge" / "bench" / "clip-720p25-3000k-v1.mkv"


class NullModel:
    """The default package's input geometry; scores nothing (scoring is the same in both modes)."""

    context = 0
    temporal_window = 0
    temporal_every = 1
    last_gated = np.zeros(0, dtype=bool)
    last_embeddings = None
    has_video = has_audio = True

    def __init__(self, package: ModelPackage) -> None:
        v, a = package.video, package.audio
        assert v is not None and a is not None
        self.width, self.height, self.fps = v.width, v.height, v.fps
        self.audio_window_s, self.audio_hop_s, self.sample_rate = a.window_s, a.hop_s, a.sample_rate

    def score_video(self, stacks: np.ndarray, masks: Any = None) -> tuple[np.ndarray, np.ndarray, list[None]]:
        n = len(stacks)
        return np.zeros(n), np.zeros(n), [None] * n

    def score_audio(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(windows)), np.zeros(len(windows))


def run_once(clip: Path, cameras: int, isolation: str, model: NullModel) -> dict[str, float]:
    from pipeline.runner import Runner, RunnerSettings
    from pipeline.sources import SourceSpec

    specs = [SourceSpec(f"cam{i}", str(clip), isolation=isolation) for i in range(cameras)]
    runner = Runner(specs, model, lambda e: None, RunnerSettings(tamper=None))
    cpu0, wall0 = tree_cpu_seconds(), time.monotonic()
    assert runner.open_sources() == {}
    runner.start()
    assert runner.wait(600)
    runner.join()
    cpu, wall = tree_cpu_seconds() - cpu0, time.monotonic() - wall0
    media_s = sum(w.timeline.latest or 0.0 for w in runner.workers.values())
    frames = sum(w.stats().frames for w in runner.workers.values())
    return {"cpu_ms_per_camera_s": 1000 * cpu / media_s, "wall_s": wall, "frames": frames}


def start_cost(clip: Path, model: NullModel, times: int = 5) -> dict[str, float]:
    """CPU and wall ms of one child's life without media: its start, open the clip, stop."""
    from pipeline.sources import SourceSpec
    from pipeline.sources.isolated import ProcessReader

    cpu0, wall0 = tree_cpu_seconds(), time.monotonic()
    for _ in range(times):
        reader = ProcessReader(SourceSpec("cam", str(clip)), width=model.width, height=model.height, fps=model.fps)
        reader.open()
        reader.close()
    cpu_ms = 1000 * (tree_cpu_seconds() - cpu0) / times
    return {"cpu_ms": cpu_ms, "wall_ms": 1000 * (time.monotonic() - wall0) / times}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from pipeline.models.package import ModelPackage

    model = NullModel(ModelPackage.load(DEFAULT_MODEL))
    runs: dict[str, list[dict[str, float]]] = {"thread": [], "process": []}
    server = start_cost(args.clip, model, times=1)  # starts the fork server, once per daemon: not a camera's cost
    for _ in range(args.rounds):
        for mode in runs:
            runs[mode].append(run_once(args.clip, args.cameras, mode, model))
    out: dict[str, Any] = {"cameras": args.cameras, "rounds": args.rounds,
                           "model_input": f"{model.width}x{model.height} luma at {model.fps:g} fps"}
    for mode, rs in runs.items():
        out[mode] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        out[mode]["cpu_ms_per_camera_s_all"] = [round(r["cpu_ms_per_camera_s"], 1) for r in rs]
    out["child_start"] = start_cost(args.clip, model)
    out["fork_server_and_first_child_start"] = server
    media_s = float(out["thread"]["frames"]) / args.cameras / model.fps
    out["process_steady_extra_ms_per_camera_s"] = (out["process"]["cpu_ms_per_camera_s"]
                                                   - out["thread"]["cpu_ms_per_camera_s"]
                                                   - out["child_start"]["cpu_ms"] / media_s)
    out["process_over_thread"] = out["process"]["cpu_ms_per_camera_s"] / out["thread"]["cpu_ms_per_camera_s"]
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{args.cameras} cameras, {out['model_input']}, median of {args.rounds} rounds")
        for mode in runs:
            r = out[mode]
            print(f"  {mode:8s} {r['cpu_ms_per_camera_s']:7.1f} CPU ms per camera-second  (runs "
                  f"{r['cpu_ms_per_camera_s_all']}, wall {r['wall_s']:.2f} s, {r['frames']:.0f} frames)")
        print(f"  process / thread: {out['process_over_thread']:.3f}")
        print(f"  a child's start: {out['child_start']['cpu_ms']:.0f} CPU ms, {out['child_start']['wall_ms']:.0f} ms;"
              f" without it, process costs {out['process_steady_extra_ms_per_camera_s']:.1f} CPU ms more per "
              "camera-second")
        first = out["fork_server_and_first_child_start"]
        print(f"  the fork server's start with the first child (once per daemon): {first['cpu_ms']:.0f} CPU ms, "
              f"{first['wall_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
