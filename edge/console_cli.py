"""``edge console`` (the operator's console over a run's events) and ``edge feedback`` (a verdict on one event).

    edge console [-c site.yaml | --outbox PATH --media DIR] [--host H] [--port 8971] [--token-file F]
    edge feedback EVENT_ID normal|real [--note TEXT] [-c site.yaml | --outbox PATH]

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

from edge.argtypes import port

DEFAULT_PORT = 8971


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = sub.add_parser("console", help="open the operator's console on a run's events (review, cameras)")
    _store_options(console)
    console.add_argument("--media", type=Path, default=None,
                         help="media directory of snapshots and clips (default: the config's, else .lepton/media)")
    console.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    console.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0: any free port")
    console.add_argument("--token-file", type=Path, default=None,
                         help="file holding a token every request must carry (required beyond loopback); a browser "
                              "opens the console once with ?token=<token>")
    console.set_defaults(func=cmd_console)

    feedback = sub.add_parser("feedback", help="store an operator's verdict on an event: normal or real")
    feedback.add_argument("event_id")
    feedback.add_argument("verdict", choices=("normal", "real"))
    feedback.add_argument("--note", default=None, help="why (at most 500 characters)")
    _store_options(feedback)
    feedback.set_defaults(func=cmd_feedback)


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=None, help="site config: its outbox (event store) and media paths")
    parser.add_argument("--outbox", type=Path, default=None,
                        help="outbox file holding the events (default: the config's, else .lepton/outbox.db)")


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
        return _fail(f"--host {args.host} is reachable from the network: the console needs --token-file there",
                     EXIT_USAGE)
    app = build_app(ConsoleContext(store_path=outbox, media_dir=media, site=site), token=token,
                    loopback=is_loopback(args.host))
    try:
        server = WebServer(app, host=args.host, port=args.port, name="console")
    except OSError as exc:
        app.close()
        return _fail(f"console {args.host}:{args.port}: {exc.strerror or exc}")
    server.start()
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"console on http://{host}:{server.port}/review  (events of {outbox}, media {media}; Ctrl-C stops it)",
          flush=True)
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
    print(f"event {args.event_id}: {record.verdict}" + (f" ({record.note})" if record.note else ""),
          file=sys.stdout)
    return EXIT_OK
