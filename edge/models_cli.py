"""``edge`` commands about models: score a file, evaluate a package, re-export it, build TensorRT engines, benchmark
engines (``edge bench`` is the pipeline's throughput benchmark, elsewhere). ``edge.cli`` registers them with
``models_cli.add_parsers(sub)``.

    edge score --model DIR CLIP|AUDIO|'frames/%05d.jpg'|FOLDER [--fps F] --out scores.csv
    edge eval --model DIR CLIP... [--json]
    edge export --model DIR [--out DIR]
    edge build-engine --model DIR [--max-batch N] [--precision fp16|fp32] [--cache-dir DIR]
    edge bench-engines --model DIR [--batches 1 4 8] [--json]

One entry function per command, each returning an exit code; human output on stdout, logs and errors on stderr
(one line, no traceback, for anything a user can fix). Heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from edge.argtypes import positive_float, positive_int
from edge.errors import live_camera_refusal
from pipeline.models.default_package import default_package_dir

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_RUNTIME) -> int:
    from pipeline.redact import redact_text

    print(f"edge: {redact_text(message)}", file=sys.stderr)
    return code


def _engine_config(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = {"type": args.engine}
    if args.engine == "onnxruntime":
        cfg["intra_op_num_threads"] = args.threads
    elif args.engine == "torch":
        cfg["num_threads"] = args.threads
    return cfg


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine",
        choices=["onnxruntime", "torch", "tensorrt"],
        default="onnxruntime",
        help="inference backend (default onnxruntime on CPU)",
    )
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads of the engine (default 1)")


def _known_errors() -> tuple[type[BaseException], ...]:
    from pipeline.errors import PipelineError

    return (PipelineError, FileNotFoundError, ValueError, OSError)


# ------------------------------------------------------------------------------------------------------ score


def cmd_score(args: argparse.Namespace) -> int:
    from pipeline.evaluation import score_media, write_scores_csv
    from pipeline.models.package import ModelPackage
    from pipeline.scoring_model import PackageScorer

    if refusal := live_camera_refusal(args.input, "score"):
        return _fail(refusal, EXIT_USAGE)
    try:
        package = ModelPackage.load(args.model)
        scorer = PackageScorer(package, _engine_config(args), motion_threshold=args.motion_threshold)
    except _known_errors() as exc:
        return _fail(str(exc))
    t = time.monotonic()
    try:
        scores = score_media(args.input, scorer, input_fps=args.fps, batch=args.batch)
    except _known_errors() as exc:
        return _fail(str(exc))
    finally:
        scorer.close()
    if not scores.has_video and not scores.has_audio:
        return _fail(
            f"{args.input}: nothing this model scores (model has "
            f"{'video' if package.video else ''}{' and ' if package.video and package.audio else ''}"
            f"{'audio' if package.audio else ''}; the input has none of it, or is too short)"
        )
    if args.out == "-":
        rows = write_scores_csv(scores, sys.stdout)
        return EXIT_OK
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        rows = write_scores_csv(scores, f)
    tmp.replace(out)
    summary = {
        "input": args.input,
        "out": str(out),
        "rows": rows,
        "seconds": round(time.monotonic() - t, 2),
        "input_frames": int(len(scores.input_index)),
        "video_frames": int(len(scores.frame_pts)),
        "audio_windows": int(len(scores.audio)),
        "frames_gated": int(scores.video_gated.sum()),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        parts = []
        if scores.has_video:
            parts.append(
                f"{len(scores.input_index)} video frames ({summary['video_frames']} scored at the model's "
                f"{scorer.fps:g} fps, {summary['frames_gated']} of them still, motion-gated)"
            )
        if scores.has_audio:
            parts.append(f"{summary['audio_windows']} audio windows")
        print(f"{out}: {rows} rows from {' and '.join(parts)} in {summary['seconds']} s")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------------- eval


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.models.package import ModelPackage
    from pipeline.quality import evaluate, summary_lines

    for clip in args.clips:
        if refusal := live_camera_refusal(clip, "eval"):
            return _fail(refusal, EXIT_USAGE)
    try:
        report = evaluate(
            args.clips,
            ModelPackage.load(args.model),
            _engine_config(args),
            motion_threshold=args.motion_threshold,
            input_fps=args.fps,
            plots=Path(args.plots) if args.plots else None,
        )
    except _known_errors() as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print("\n".join(summary_lines(report)))
    return EXIT_OK


# ----------------------------------------------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    try:
        from pipeline.models.export import reexport_package
    except ImportError as exc:
        return _fail(f"export needs torch and onnx ({exc}): pip install 'lepton-edge[train]'")
    try:
        report = reexport_package(Path(args.model), Path(args.out) if args.out else None)
    except _known_errors() as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(report))
    else:
        for name, g in report["graphs"].items():
            print(
                f"{report['package']}/{g['graph']}: {name} re-exported (opset {report['opset']}, "
                f"sha256 {g['sha256'][:12]}, max |diff| vs previous {g['max_abs_diff_vs_previous']:.2g})"
            )
    return EXIT_OK


# ----------------------------------------------------------------------------------------------- build-engine


def _sample_shapes(package: Any, modality: str) -> dict[str, tuple[int, ...]]:
    spec = getattr(package, modality)
    if modality == "audio":
        n_frames = spec.features.config().n_frames(spec.n_samples)
        return {spec.input.name: (1, n_frames, spec.n_mels)}
    return {spec.input.name: (1, *spec.input.shape[1:])}


def cmd_build_engine(args: argparse.Namespace) -> int:
    from pipeline.engines.tensorrt import BuildState, TensorRTEngine
    from pipeline.errors import EngineError
    from pipeline.models.package import ModelPackage

    try:
        package = ModelPackage.load(args.model)
    except _known_errors() as exc:
        return _fail(str(exc))
    results = []
    for modality in ("video", "audio", "temporal"):
        if getattr(package, modality) is None:
            continue
        try:
            engine = TensorRTEngine(
                max_batch=args.max_batch,
                precision=args.precision,
                cache_dir=args.cache_dir,
                workspace_mb=args.workspace_mb,
                build="blocking",
            )
            engine.load(package.graph_path(modality))
            engine.prepare(_sample_shapes(package, modality))
        except EngineError as exc:
            return _fail(str(exc))
        if engine.state is not BuildState.READY:
            return _fail(f"{modality}: TensorRT build failed: {engine.error}")
        key = engine.key
        assert key is not None
        results.append(
            {
                "modality": modality,
                "engine": str(engine.engine_path),
                "precision": key.precision,
                "gpu": key.gpu_name,
                "compute_capability": key.compute_capability,
                "tensorrt": key.tensorrt_version,
                "max_batch": key.max_batch,
                "built_s": None if engine.build_seconds is None else round(engine.build_seconds, 1),
            }
        )
        engine.close()
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            how = "from cache" if r["built_s"] is None else f"built in {r['built_s']} s"
            print(
                f"{r['modality']}: TensorRT {r['tensorrt']} {r['precision']} batch 1..{r['max_batch']} for "
                f"{r['gpu']} (sm {r['compute_capability']}), {how}: {r['engine']}"
            )
    return EXIT_OK


# ------------------------------------------------------------------------------------------------------ bench


def cmd_bench(args: argparse.Namespace) -> int:
    from pipeline.engines import create_engine
    from pipeline.engines.benchmark import bench, table, to_json
    from pipeline.models.package import ModelPackage

    try:
        package = ModelPackage.load(args.model)
    except _known_errors() as exc:
        return _fail(str(exc))
    graphs = {m: package.graph_path(m) for m in ("video", "audio", "temporal") if getattr(package, m) is not None}
    configs = {
        f"onnxruntime cpu {args.threads}t": {"type": "onnxruntime", "intra_op_num_threads": args.threads},
        f"torch eager cpu {args.threads}t": {
            "type": "torch",
            "device": "cpu",
            "precision": "fp32",
            "num_threads": args.threads,
        },
    }
    engines = {name: (lambda c=cfg: create_engine(c)) for name, cfg in configs.items()}
    try:
        rows = bench(
            graphs,
            engines,
            args.batches,
            seconds=args.seconds,
            progress=None if args.json else lambda s: print(f"  {s}", file=sys.stderr),
        )
    except _known_errors() as exc:
        return _fail(str(exc))
    baseline = next(iter(configs)).replace("onnxruntime", "torch eager")
    if args.json:
        print(to_json(rows, package=str(package.root)))
    else:
        print(table(rows, baseline=baseline))
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- parsers


def add_parsers(sub: Any) -> None:
    """Register ``score``, ``eval``, ``export``, ``build-engine`` and ``bench-engines`` on ``edge``'s subparsers."""
    score = sub.add_parser("score", help="score a clip, audio file or image sequence into a CSV of calibrated scores")
    score.add_argument(
        "input",
        help="media file (video and/or audio: MKV, MP4, WAV, FLAC, OGG, ...), image-sequence "
        "pattern (frames/%%05d.jpg) or folder of frames",
    )
    score.add_argument("--model", default=str(default_package_dir()), help="model package directory (default: bundled)")
    score.add_argument(
        "--out", default="-", help="CSV to write (default: stdout); columns frame,pts,video,temporal,audio,fused"
    )
    score.add_argument(
        "--fps",
        type=positive_float,
        default=None,
        help="frame rate of an image sequence (default: the rate the package was trained at)",
    )
    score.add_argument(
        "--motion-threshold",
        type=float,
        default=5.0,
        help="luma change (levels) below which a frame counts as still and skips the CNN; 0: off",
    )
    score.add_argument("--batch", type=positive_int, default=32, help="frames / windows per inference call")
    score.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_engine_args(score)
    score.set_defaults(func=cmd_score)

    ev = sub.add_parser("eval", help="frame-level ROC-AUC and event recall / false alarms on labelled clips")
    ev.add_argument(
        "clips",
        nargs="+",
        help='inputs with <input>.json ground truth beside them: "anomalies" '
        'intervals, or "frame_labels" (a 0/1 per input frame); without one an input is all normal',
    )
    ev.add_argument("--model", default=str(default_package_dir()), help="model package directory (default: bundled)")
    ev.add_argument("--fps", type=positive_float, default=None, help="frame rate of image-sequence inputs")
    ev.add_argument("--motion-threshold", type=float, default=5.0, help="motion gate threshold; 0: off")
    ev.add_argument("--json", action="store_true", help="the full report as JSON")
    ev.add_argument(
        "--plots",
        default=None,
        metavar="DIR",
        help="write PNG plots here: ROC curves beside the baselines, each input's scores over time",
    )
    _add_engine_args(ev)
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser("export", help="re-export a package's ONNX graphs from its .pt weights (+ model.json)")
    ex.add_argument("--model", required=True, help="model package directory")
    ex.add_argument("--out", default=None, help="write the package here instead of in place")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_export)

    be = sub.add_parser(
        "build-engine", help="build and cache TensorRT engines for a package ahead of time (NVIDIA GPU)"
    )
    be.add_argument("--model", required=True, help="model package directory")
    be.add_argument("--max-batch", type=int, default=8, help="largest batch of the optimisation profile")
    be.add_argument("--precision", choices=["fp16", "fp32"], default="fp16")
    be.add_argument("--cache-dir", default=None, help="engine cache (default ~/.cache/lepton-edge/tensorrt)")
    be.add_argument("--workspace-mb", type=int, default=1024)
    be.add_argument("--json", action="store_true")
    be.set_defaults(func=cmd_build_engine)

    bn = sub.add_parser("bench-engines", help="inference speed per batch size: ONNX Runtime vs torch eager on CPU")
    bn.add_argument("--model", default=str(default_package_dir()), help="model package directory (default: bundled)")
    bn.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    bn.add_argument("--threads", type=int, default=1)
    bn.add_argument("--seconds", type=float, default=1.0, help="measuring time per engine and batch size")
    bn.add_argument("--json", action="store_true")
    bn.set_defaults(func=cmd_bench)
