"""The operator's commands: ``edge console`` (the console over a run's events), ``edge feedback`` (a verdict on one
event) and ``edge recalibrate`` (fold the clips of a camera's events marked normal into a new package version).

    edge console [-c site.yaml | --outbox PATH --media DIR] [--host H] [--port 8971] [--token-file F]
    edge feedback EVENT_ID normal|real [--note TEXT] [-c site.yaml | --outbox PATH]
    edge recalibrate --camera ID [-c site.yaml] [--out DIR] [--json]

Both read the event store in the outbox file (``alerts.store``): by default the demo's, ``.lepton/outbox.db``
with its media in ``.lepton/media`` (the working directory's, as ``edge run`` writes them); ``-c`` takes a site's
paths from its config. The console binds 127.0.0.1; any other address needs ``--token-file``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from edge.argtypes import port

if TYPE_CHECKING:
    from alerts.store import EventStore
    from pipeline.models.package import ModelPackage
    from pipeline.recalibrate import NormalClip

DEFAULT_PORT = 8971


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = sub.add_parser("console", help="open the operator's console on a run's events (review, cameras)")
    _store_options(console)
    console.add_argument(
        "--media",
        type=Path,
        default=None,
        help="media directory of snapshots and clips (default: the config's, else .lepton/media)",
    )
    console.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    console.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0: any free port")
    console.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file holding a token every request must carry (required beyond loopback); a browser "
        "opens the console once with ?token=<token>",
    )
    console.set_defaults(func=cmd_console)

    feedback = sub.add_parser("feedback", help="store an operator's verdict on an event: normal or real")
    feedback.add_argument("event_id")
    feedback.add_argument("verdict", choices=("normal", "real"))
    feedback.add_argument("--note", default=None, help="why (at most 500 characters)")
    _store_options(feedback)
    feedback.set_defaults(func=cmd_feedback)

    recal = sub.add_parser(
        "recalibrate",
        help="fold the clips of a camera's events marked normal into its model's calibration: a new package version",
    )
    recal.add_argument("--camera", required=True, help="the camera whose verdicts to learn from")
    _store_options(recal)
    recal.add_argument("--media", type=Path, default=None, help="media directory of the clips (default: the config's)")
    recal.add_argument(
        "--out",
        type=Path,
        default=None,
        help="package directory to write (default: models/<camera>); point the config's model: at it",
    )
    recal.add_argument("--json", action="store_true", help="print the report as JSON")
    recal.set_defaults(func=cmd_recalibrate)


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=None, help="site config: its outbox (event store) and media paths")
    parser.add_argument(
        "--outbox",
        type=Path,
        default=None,
        help="outbox file holding the events (default: the config's, else .lepton/outbox.db)",
    )


def _paths(args: argparse.Namespace) -> tuple[Path, Path, str]:
    """Outbox, media directory and site label from the flags, the config, or the defaults."""
    from alerts.outbox import DEFAULT_OUTBOX_PATH
    from pipeline.media.settings import DEFAULT_MEDIA_PATH

    outbox, media, site = DEFAULT_OUTBOX_PATH, DEFAULT_MEDIA_PATH, "demo"
    if args.config is not None:
        from edge.config import load_config

        cfg = load_config(args.config)
        outbox, media, site = cfg.outbox.path, cfg.media.path, cfg.site
    return args.outbox or outbox, getattr(args, "media", None) or media, site


def cmd_console(args: argparse.Namespace) -> int:
    from alerts.errors import OutboxError
    from edge.cli import EXIT_OK, EXIT_USAGE, _fail
    from edge.daemon import _health_token
    from edge.errors import ConfigError, StartupError
    from edge.health import is_loopback
    from edge.web.app import build_app
    from edge.web.context import ConsoleContext
    from edge.web.server import WebServer

    try:
        outbox, media, site = _paths(args)
        token = _health_token(args.token_file)
    except (ConfigError, StartupError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    if not outbox.is_file():
        return _fail(f"no events at {outbox}: run the daemon first (make demo, or edge run -c site.yaml)")
    if token is None and not is_loopback(args.host):
        return _fail(
            f"--host {args.host} is reachable from the network: the console needs --token-file there", EXIT_USAGE
        )
    try:
        app = build_app(
            ConsoleContext(store_path=outbox, media_dir=media, site=site), token=token, loopback=is_loopback(args.host)
        )
    except OutboxError as exc:  # not an outbox, or one this user may not write verdicts to
        return _fail(str(exc))
    try:
        server = WebServer(app, host=args.host, port=args.port, name="console")
    except OSError as exc:
        app.close()
        return _fail(f"console {args.host}:{args.port}: {exc.strerror or exc}")
    server.start()
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"console on http://{host}:{server.port}/review  (events of {outbox}, media {media}; Ctrl-C stops it)",
        flush=True,
    )
    _wait_for_signal()
    server.stop()
    app.close()
    return EXIT_OK


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def cmd_feedback(args: argparse.Namespace) -> int:
    from alerts.errors import OutboxError
    from alerts.store import EventNotFoundError, EventStore
    from edge.cli import EXIT_OK, EXIT_USAGE, _fail
    from edge.errors import ConfigError

    try:
        outbox, _, _ = _paths(args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    try:
        with EventStore(outbox) as store:
            record = store.set_verdict(args.event_id, args.verdict, args.note, source="cli")
    except EventNotFoundError:
        return _fail(f"no event {args.event_id} in {outbox}")
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OutboxError as exc:
        return _fail(str(exc))
    print(f"event {args.event_id}: {record.verdict}" + (f" ({record.note})" if record.note else ""), file=sys.stdout)
    return EXIT_OK


def cmd_recalibrate(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from alerts.errors import OutboxError
    from alerts.store import EventStore
    from edge.cli import EXIT_OK, EXIT_USAGE, _fail
    from edge.config import EdgeConfig, load_config
    from edge.errors import ConfigError
    from pipeline.errors import PipelineError
    from pipeline.models.package import ModelPackage
    from pipeline.recalibrate import recalibrate

    try:
        cfg = (
            load_config(args.config)
            if args.config
            else EdgeConfig.model_validate({"cameras": [{"id": args.camera, "url": "unused"}]})
        )
        outbox, media, _ = _paths(args)
        package = ModelPackage.load(cfg.model)
        with EventStore(outbox, readonly=True) as store:
            clips = _normal_clips(store, args.camera, media, package, cfg.events.exit)
        out = args.out or Path("models") / args.camera
        report = recalibrate(package, clips, out, threshold=cfg.events.enter, camera_id=args.camera, engine=cfg.engine)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (PipelineError, OutboxError, ValueError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps({**asdict(report), "out": str(out)}))
        return EXIT_OK
    print(f"model package {report.package_id} {report.version_from} -> {report.version_to} written to {out}")
    for clip in report.clips:
        print(f"   folded {clip}")
    for m, r in report.modalities.items():
        print(
            f"   {m}: {r['folded']} scores; threshold {cfg.events.enter:g} is raw "
            f"{r['raw_at_threshold'][0]:g} -> {r['raw_at_threshold'][1]:g}; the clips' highest score "
            f"{r['clip_max'][0]:.2f} -> {r['clip_max'][1]:.2f}"
        )
    print(f"   point the config's model: at {out} and restart the daemon")
    return EXIT_OK


def _normal_clips(store: EventStore, camera: str, media: Path, package: ModelPackage, floor: float) -> list[NormalClip]:
    """The clips of the camera's events marked normal that the package has not folded yet, with the modalities
    each event named at or above ``floor`` (the exit threshold)."""
    import logging

    from pipeline.recalibrate import NormalClip

    done = {s.name for s in package.trained_on.sources}
    clips = []
    for stored in store.verdicts(camera, "normal"):
        msg = stored.message
        path = (media / msg.clip).resolve() if msg.clip else None
        if any(f"event {msg.event_id}," in name for name in done):
            continue
        if path is None or not path.is_file():
            logging.getLogger("edge").warning("event %s: no clip kept (%s), not folded", msg.event_id, msg.clip)
            continue
        named = frozenset(m for m, peak in msg.modalities.items() if peak.peak >= floor)
        clips.append(NormalClip(msg.event_id, path, named))
    return clips
