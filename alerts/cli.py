"""The ``alerts`` command: read decided events back, from the local outbox or from Kafka.

    alerts tail                         every event in ./.lepton/outbox.db, then exit
    alerts tail --follow                ... and keep printing new ones until Ctrl-C
    alerts tail --bootstrap HOST:PORT --topic T [--group G] [--from-beginning] [--follow] [--idle-timeout S]
    alerts tail ... --json              one wire message (JSON) per line instead of a human line

Output goes to stdout; errors are one line on stderr and a non-zero exit (1 runtime, 2 usage, 130 Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from alerts.errors import AlertsError, MessageFormatError, OutboxNotFoundError
from alerts.outbox import DEFAULT_OUTBOX_PATH, Outbox
from alerts.schema import EventMessage

PROG = "alerts"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kafka-python logs every failed connection attempt at ERROR; our own message says what matters.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        code: int = args.func(args, parser)
        return code
    except SystemExit as exc:  # parser.error() inside a command
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `alerts tail | head`: the reader went away. Point stdout at /dev/null so the interpreter's final
        # flush does not print a traceback either (the recipe of Python's signal docs).
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    except AlertsError as exc:
        _error(str(exc))
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Read Lepton Edge anomaly events.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tail = sub.add_parser(
        "tail",
        help="print events from the local outbox or a Kafka topic",
        description="Print events: by default every event in the local outbox, then exit. With --bootstrap"
        " and --topic, consume the Kafka topic as a member of a consumer group.",
    )
    tail.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logs")
    tail.add_argument(
        "--outbox", type=Path, default=None, help=f"outbox file to read (default: {DEFAULT_OUTBOX_PATH})"
    )
    tail.add_argument("--bootstrap", help="Kafka bootstrap host:port[,host:port...]: read the topic instead")
    tail.add_argument("--topic", help="Kafka topic (with --bootstrap)")
    tail.add_argument("--group", default="alerts-tail", help="consumer group (default: alerts-tail)")
    tail.add_argument(
        "--from-beginning",
        action="store_true",
        help="read each partition from its start, not from the group's",
    )
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events until Ctrl-C")
    tail.add_argument(
        "--idle-timeout",
        type=_positive_float,
        default=5.0,
        metavar="S",
        help="Kafka without --follow: exit after S seconds without a message (default: 5)",
    )
    tail.add_argument(
        "--connect-timeout",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="Kafka: give up reaching the broker after S seconds (default: 10)",
    )
    tail.add_argument("--json", action="store_true", help="one JSON wire message per line")
    tail.set_defaults(func=_cmd_tail)
    return parser


def _cmd_tail(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.bootstrap is None:
        if args.topic is not None or args.from_beginning or args.group != "alerts-tail":
            parser.error("--topic, --group and --from-beginning need --bootstrap")
        return _tail_outbox(args.outbox or DEFAULT_OUTBOX_PATH, follow=args.follow, as_json=args.json)
    if args.topic is None:
        parser.error("--bootstrap needs --topic")
    if args.outbox is not None:
        parser.error("--outbox and --bootstrap are alternatives")
    return _tail_kafka(args, parser)


def _tail_outbox(path: Path, *, follow: bool, as_json: bool) -> int:
    from alerts.consumer import read_outbox

    try:
        outbox = Outbox(path, readonly=True)
    except OutboxNotFoundError:
        _error(f"no outbox at {path} (is the daemon configured with another outbox path?)")
        return 1
    with outbox:
        for row in read_outbox(outbox, follow=follow):
            if as_json:
                _emit(sys.stdout, row.payload.decode("utf-8", errors="replace"))
                continue
            try:
                msg = row.message()
            except MessageFormatError as exc:
                _emit(sys.stdout, f"# row {row.id}: {exc}")
                continue
            _emit(sys.stdout, format_event(msg))
    return 0


def _tail_kafka(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from alerts.consumer import Subscriber
    from alerts.publisher import KafkaSettings

    try:
        settings = KafkaSettings(
            bootstrap=args.bootstrap,
            topic=args.topic,
            client_id="alerts-tail",
            connect_timeout_s=args.connect_timeout,
        )
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(str(p) for p in e['loc'][:1])}: {e['msg']}" for e in exc.errors())
        parser.error(problems)
    stop = threading.Event()
    with Subscriber(
        settings,
        group_id=args.group,
        from_beginning=args.from_beginning,
        session_timeout_s=10.0,
        heartbeat_interval_s=2.0,
    ) as sub:
        stream: Iterator[EventMessage] = sub.messages(
            idle_timeout_s=None if args.follow else args.idle_timeout,
            assignment_timeout_s=None if args.follow else max(30.0, args.idle_timeout),
            stop=stop,
        )
        with contextlib.closing(stream):  # type: ignore[type-var]
            for msg in stream:
                _emit(sys.stdout, msg.model_dump_json() if args.json else format_event(msg))
    return 0


def format_event(msg: EventMessage) -> str:
    """One human line: decision time, camera, type, event#seq, score, modalities; for an end, reason."""
    when = msg.decided_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{msg.decided_at.microsecond // 1000:03d}Z"
    mods = " ".join(f"{name}={m.peak:.2f}" for name, m in sorted(msg.modalities.items()))
    parts = [
        when,
        msg.camera_id,
        f"{msg.type:<6}",
        f"{msg.event_id[:12]}#{msg.seq}",
        f"score={msg.peak_score:.2f}",
    ]
    if mods:
        parts.append(mods)
    if msg.type == "end" and msg.end_time is not None:
        parts.append(f"reason={msg.reason}")
        parts.append(f"duration={(msg.end_time - msg.start_time).total_seconds():.1f}s")
    return "  ".join(parts)


def _emit(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


if __name__ == "__main__":
    sys.exit(main())
