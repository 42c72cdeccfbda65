"""The ``edge`` command: run the daemon, write and check a config, train a camera's model.

One entry function per command, each returning an exit code. Human output on stdout, logs on stderr. Errors a
user can fix (bad config, missing file, camera unreachable, missing model) print one line on stderr and exit
non-zero without a traceback. Heavy imports (torch) happen inside the command that needs them, so ``edge --help``
stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge.argtypes import positive_float, positive_int

if TYPE_CHECKING:
    from edge.config import EdgeConfig

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2

log = logging.getLogger("edge")


def _setup_logging(verbose: int, log_format: str = "text") -> None:
    from pipeline.logformat import formatter

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])
    from pipeline.redact import install_log_redaction

    install_log_redaction()  # every record, ours or a library's: no URL leaves with its credentials


def _fail(message: str, code: int = EXIT_RUNTIME) -> int:
    from pipeline.logformat import JsonFormatter
    from pipeline.redact import redact_text

    if any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers):
        log.error("%s", message)  # --log-format json: every line on stderr is an object (redacted by the filter)
    else:
        print(f"edge: {redact_text(message)}", file=sys.stderr)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.errors import ConfigError

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    return _run_daemon(cfg, args)


def _run_daemon(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    from alerts import AlertsError
    from edge.daemon import Daemon
    from edge.errors import EdgeError
    from pipeline.errors import PipelineError

    daemon = Daemon(cfg, console=None if args.quiet else sys.stdout, duration_s=args.duration)
    try:
        summary = daemon.run()
    except (EdgeError, PipelineError, AlertsError) as exc:
        return _fail(str(exc))
    latency = {
        name: None
        if st is None
        else {
            "count": st.count,
            "p50_ms": round(st.p50_s * 1000, 1),
            "p95_ms": round(st.p95_s * 1000, 1),
            "max_ms": round(st.max_s * 1000, 1),
        }
        for name, st in (("new", summary.ack_latency_new), ("all", summary.ack_latency_all))
    }
    if args.json:
        print(
            json.dumps(
                {
                    "seconds": round(summary.seconds, 2),
                    "events_new": summary.events_new,
                    "events_end": summary.events_end,
                    "cameras": summary.per_camera,
                    "outbox_pending": summary.outbox_pending,
                    "events_recovered": summary.events_recovered,
                    "ack_latency": latency if cfg.kafka else None,
                    "media": summary.media,
                    "engines": summary.engines,
                }
            )
        )
    else:
        print(f"-- {summary.events_new} event(s) opened, {summary.events_end} ended in {summary.seconds:.1f} s")
        if summary.events_recovered:
            print(f"   {summary.events_recovered} event(s) left open by a previous run ended with reason=restart")
        for cam, st in summary.per_camera.items():
            print(
                f"   {cam}: {st['frames_scored']} frames and {st['audio_windows_scored']} audio windows scored, "
                f"{st['events']} event messages, {st['dropped']} dropped"
            )
        where = "Kafka" if cfg.kafka else f"the outbox {cfg.outbox.path} (read it with: alerts tail)"
        print(f"   scored with {summary.engines}")
        print(f"   events are in {where}")
        if summary.media is not None:
            m = summary.media
            print(
                f"   {m['snapshots_written']} snapshot(s) and {m['clips_written']} clip(s) written to "
                f"{cfg.media.path}"
                + (
                    f"; {m['refused']} event(s) without them, {m['write_failures']} write failure(s)"
                    if m["refused"] or m["write_failures"]
                    else ""
                )
            )
        if summary.outbox_pending:
            print(f"   {summary.outbox_pending} event(s) not yet acknowledged by Kafka stay in the outbox")
        for name, what in (("new", "new events"), ("all", "all messages")):
            lat = latency[name]
            if cfg.kafka and lat is not None:
                print(
                    f"   capture -> Kafka ack, {what}: p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms "
                    f"(n={lat['count']})"
                )
    for cam, error in summary.failed_files.items():  # what it read was scored; the rest of the file was not there
        _fail(f"camera {cam}: {error}")
    return EXIT_RUNTIME if summary.failed_files else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.errors import ConfigError

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    print(f"{args.config}: ok ({len(cfg.cameras)} camera(s), model {cfg.model})")
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    """Write the commented site template (``configs/site.yaml``, shipped as package data) for an operator to edit."""
    from importlib import resources

    out = Path(args.path)
    template = (resources.files("edge") / "templates" / "site.yaml").read_text(encoding="utf-8")
    try:
        with out.open("w" if args.force else "x", encoding="utf-8") as f:
            f.write(template)
    except FileExistsError:
        return _fail(f"{out} exists: not overwritten (--force to replace it)", EXIT_USAGE)
    except OSError as exc:
        return _fail(f"{out}: {exc.strerror or exc}")
    print(f"site template written to {out}: set its cameras and Kafka, then check it with: edge validate-config {out}")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.errors import PipelineError

    try:
        from pipeline.models.train import train_package
    except ImportError as exc:
        return _fail(f"training needs torch ({exc}): pip install 'lepton-edge[train]'")
    try:
        normal = [*args.normal, *_camera_streams(args.config, args.camera)]
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if not normal:
        return _fail("nothing to learn from: give --normal footage or -c site.yaml --camera ID", EXIT_USAGE)
    try:
        report = train_package(
            normal,
            Path(args.out),
            minutes=args.minutes,
            seed=args.seed,
            progress=not args.quiet,
            input_fps=args.fps,
            video=not args.no_video,
            audio=not args.no_audio,
            threads=args.threads,
            record_s=args.record_minutes * 60.0,
            record_dir=Path(args.record_to) if args.record_to else None,
        )
    except (PipelineError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:  # a missing input; the package cannot be written (a full disk, a read-only folder)
        return _fail(f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror or str(exc))
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print(f"model package written to {args.out}")
        for camera, path in report.get("recordings", {}).items():
            print(f"   recorded {camera} to {path} (train or evaluate with it again)")
        for key in ("footage", "video", "temporal", "audio"):
            part = report.get(key)
            if isinstance(part, dict):
                details = ", ".join(f"{k}={v}" for k, v in part.items() if not isinstance(v, (list, dict)))
                print(f"   {key}: {details}")
                cal = part.get("calibration")
                if isinstance(cal, dict) and "margin" in cal:
                    held = report.get("heldout", {}).get("audio" if key == "audio" else "video", "held-out part")
                    print(
                        f"   {key} held-out ({held}): {cal['n']} scores, {100 * cal['heldout_rate_ge_3']:.2f}% >= 3 "
                        f"(the calibration promises 0.1% on new footage), generalisation margin "
                        f"x{cal['margin']:.2f} (held-out vs trained-on scores)"
                    )
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay files through a model without writing a config: the integrator's quick look at a site or model."""
    from pydantic import ValidationError

    from edge.config import EdgeConfig
    from edge.errors import live_camera_refusal

    ids: dict[str, int] = {}
    cameras = []
    for clip in args.clips:
        if refusal := live_camera_refusal(clip, "replay"):
            return _fail(refusal, EXIT_USAGE)
        stem = Path(clip.rstrip("/")).stem.replace("%", "") or "clip"
        n = ids.get(stem, 0)
        ids[stem] = n + 1
        cameras.append(
            {
                "id": stem if n == 0 else f"{stem}-{n + 1}",
                "url": str(Path(clip).resolve()),
                "replay": "realtime" if args.realtime else "fast",
                **({"fps": args.fps} if args.fps else {}),
            }
        )
    data: dict[str, object] = {"site": args.site, "cameras": cameras, "events": {"threshold": args.threshold}}
    if args.model:
        data["model"] = str(Path(args.model).resolve())
    if args.outbox:
        data["outbox"] = {"path": args.outbox}
    if args.bootstrap:
        data["kafka"] = {"bootstrap": args.bootstrap, "topic": args.topic}
    try:
        cfg = EdgeConfig.model_validate(data)
    except ValidationError as exc:
        return _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), EXIT_USAGE)
    return _run_daemon(cfg, args)


def _camera_streams(config: str | None, ids: Sequence[str]) -> list[str]:
    """The stream each camera of ``config`` named in ``ids`` is scored on (its ``detect_url``, else its ``url``), so
    that a password stays in the config file, out of command lines and shell history. Raises ``ValueError``."""
    from edge.config import load_config
    from edge.errors import ConfigError

    if not ids:
        return []
    if config is None:
        raise ValueError("--camera names a camera of a config file: give it with -c site.yaml")
    try:
        cameras = {c.id: c for c in load_config(config).cameras}
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    unknown = [i for i in ids if i not in cameras]
    if unknown:
        raise ValueError(f"{config} has no camera {', '.join(unknown)} (its cameras: {', '.join(cameras)})")
    return [cameras[i].detect_url or cameras[i].url for i in ids]


def cmd_record(args: argparse.Namespace) -> int:
    """Record a live camera into a Matroska file (stream copy), to train or evaluate on."""
    from pipeline.errors import PipelineError
    from pipeline.sources.record import record_camera, recording_name

    if (args.url is None) == (args.camera is None):
        return _fail("give a camera's URL or -c site.yaml --camera ID (one of them)", EXIT_USAGE)
    try:
        url = args.url or _camera_streams(args.config, [args.camera])[0]
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    out = Path(args.out) if args.out else Path(recording_name(url))
    if out.exists():  # before connecting to the camera
        return _fail(f"{out} exists: not overwritten", EXIT_USAGE)
    try:
        rec = record_camera(url, out, args.minutes * 60.0, progress=not args.quiet)
    except FileExistsError:
        return _fail(f"{out} exists: not overwritten", EXIT_USAGE)
    except (PipelineError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:  # the file cannot be written (a full disk, a read-only folder)
        return _fail(f"{exc.filename or out}: {exc.strerror or exc}")
    print(
        f"recorded {rec.seconds:.0f} s to {rec.path}"
        + (f" (stopped early: {rec.stopped_early})" if rec.stopped_early else "")
    )
    return EXIT_OK


def _add_record_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    record = sub.add_parser("record", help="record a live camera (stream copy) into a file to train or evaluate on")
    record.add_argument("url", nargs="?", help="the camera's stream (rtsp://...)")
    record.add_argument("-c", "--config", help="a site config whose --camera to record")
    record.add_argument("--camera", help="the id of a camera of -c: its scored stream (detect_url, else url)")
    record.add_argument("--minutes", type=positive_float, default=5.0, help="how long to record (default 5)")
    record.add_argument(
        "--out", default=None, help="the Matroska file to write (default: <host>_<path>_<UTC time>.mkv here)"
    )
    record.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    record.set_defaults(func=cmd_record)


def _add_train_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = sub.add_parser("train", help="learn a camera's normal picture and sound into a model package")
    train.add_argument(
        "--normal",
        nargs="+",
        default=[],
        help="normal footage: clips, image-sequence patterns (frames/%%03d.jpg), folders of frames, or "
        "folders of clips / of frame folders (each one an input)",
    )
    train.add_argument("-c", "--config", help="a site config whose --camera to record and learn")
    train.add_argument(
        "--camera",
        action="append",
        default=[],
        help="the id of a camera of -c (repeatable): its scored stream (detect_url, else url) is recorded "
        "(--record-minutes) and learnt, its password never on the command line",
    )
    train.add_argument("--out", required=True, help="model package directory to write")
    train.add_argument("--minutes", type=positive_float, default=5.0, help="training time budget (default 5)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads for training (default: the usable cores, at most 8)",
    )
    train.add_argument(
        "--fps", type=positive_float, default=None, help="frame rate of image-sequence inputs (default 10)"
    )
    train.add_argument(
        "--record-minutes",
        type=positive_float,
        default=5.0,
        help="how much of a live camera (rtsp://...) to record and learn from (default 5)",
    )
    train.add_argument(
        "--record-to",
        default=None,
        help="folder the live cameras' recordings are kept in (default: <out>-recordings beside the package)",
    )
    train.add_argument("--no-video", action="store_true", help="train the audio model only")
    train.add_argument("--no-audio", action="store_true", help="train the video model only")
    train.add_argument("--json", action="store_true", help="print the training report as JSON")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge", description="Lepton Edge: real-time anomaly detection beside cameras")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv: debug)")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="logs on stderr as text lines (default) or one JSON object per line, for an aggregator",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon on the cameras of a config file")
    run.add_argument("-c", "--config", required=True, help="YAML config (see configs/)")
    run.add_argument("--duration", type=positive_float, default=None, help="stop after this many seconds")
    run.add_argument("--json", action="store_true", help="print the closing summary as one JSON object")
    run.add_argument("-q", "--quiet", action="store_true", help="do not print events as they are decided")
    run.set_defaults(func=cmd_run)

    replay = sub.add_parser("replay", help="replay clips or image sequences through a model (no config file)")
    replay.add_argument("clips", nargs="+", help="media files, image patterns (frames/%%03d.jpg) or folders")
    replay.add_argument("--model", default=None, help="model package (default: the bundled one)")
    replay.add_argument("--realtime", action="store_true", help="pace the replay like a live camera")
    replay.add_argument("--fps", type=positive_float, default=None, help="frame rate of image-sequence inputs")
    replay.add_argument("--threshold", type=float, default=3.0, help="calibrated event threshold (default 3.0)")
    replay.add_argument("--site", default="replay")
    replay.add_argument("--outbox", default=None, help="outbox path (default .lepton/outbox.db)")
    replay.add_argument("--bootstrap", default=None, help="also deliver to Kafka at HOST:PORT")
    replay.add_argument("--topic", default="lepton.events", help="Kafka topic (with --bootstrap)")
    replay.add_argument("--duration", type=positive_float, default=None, help="stop after this many seconds")
    replay.add_argument("--json", action="store_true", help="print the closing summary as one JSON object")
    replay.add_argument("-q", "--quiet", action="store_true", help="do not print events as they are decided")
    replay.set_defaults(func=cmd_replay)

    init = sub.add_parser("init", help="write the commented site config template to a file, to edit")
    init.add_argument("path", help="file to write (e.g. site.yaml)")
    init.add_argument("--force", action="store_true", help="replace the file if it exists")
    init.set_defaults(func=cmd_init)

    val = sub.add_parser("validate-config", help="check a config file and list every problem with its line")
    val.add_argument("config")
    val.set_defaults(func=cmd_validate)

    _add_train_parser(sub)
    _add_record_parser(sub)

    from edge import bench_cli, console_cli, doctor, models_cli, simulate

    console_cli.add_parsers(sub)  # console, feedback
    doctor.add_parser(sub)
    simulate.add_parser(sub)
    bench_cli.add_parser(sub)
    models_cli.add_parsers(sub)  # score, eval, export, build-engine, bench-engines
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose, args.log_format)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
