"""The ``alerts`` command: read decided events back, from the local outbox or from Kafka.

    alerts tail                         every event in ./.lepton/outbox.db, then exit
    alerts tail --follow                ... and keep printing new ones until Ctrl-C
    alerts tail --bootstrap HOST:PORT --topic T [--group G] [--from-beginning] [--follow] [--idle-timeout S]
    alerts tail ... --json              one wire message (JSON) per line instead of a human line
    alerts tail --since 2h|ISO          only what was decided since then (outbox: the history it keeps; Kafka: from
                                        the first record at or after that time)
    alerts tail|consume ... [--kafka-config site.yaml] [--security-protocol P --sasl-mechanism M --username U
                   --password-file F --ssl-cafile PEM ...]   TLS / SASL as the daemon's kafka: section
    alerts consume --bootstrap HOST:PORT --topic T --group G
                   [--from-beginning | --from-time ISO | --from-offset N|P:N,...]
                   --sink stdout|jsonl:PATH|webhook:URL [--dead-letter PATH] [--idle-timeout S]
                                        deliver every event to a sink, at least once, de-duplicated; offsets
                                        are committed only after the sink took the message

Output goes to stdout; errors are one line on stderr and a non-zero exit (1 runtime, 2 usage, 130 Ctrl-C).
``alerts consume`` ends on SIGTERM or Ctrl-C (exit 0 / 130) after committing what its sink took, or after
``--idle-timeout``; a sink that fails without a dead letter ends it with exit 1, the failed message
uncommitted (it comes again at the next start).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import ValidationError

from alerts.console import format_event, printable
from alerts.errors import AlertsError, MessageFormatError, OutboxNotFoundError
from alerts.outbox import DEFAULT_OUTBOX_PATH, Outbox
from alerts.schema import EventMessage
from pipeline.logformat import formatter
from pipeline.redact import install_log_redaction, redact_text

if TYPE_CHECKING:
    from alerts.publisher import KafkaSettings

PROG = "alerts"
_SINK_BUDGET_S = 10.0  # the longest a stdout or JSON-lines sink takes one message (an fsync on a slow disk)
log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return int(exc.code or 0)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(args.log_format))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, handlers=[handler])
    install_log_redaction()  # every record, ours or kafka-python's: no URL leaves with its credentials
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
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="logs on stderr as text lines (default) or one JSON object per line, for an aggregator",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_tail(sub)
    _add_consume(sub)
    return parser


def _add_tail(sub: Any) -> None:
    tail = sub.add_parser(
        "tail",
        help="print events from the local outbox or a Kafka topic",
        description="Print events: by default every event in the local outbox, then exit. With --bootstrap"
        " and --topic, consume the Kafka topic as a member of a consumer group.",
    )
    tail.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logs")
    tail.add_argument("--outbox", type=Path, default=None, help=f"outbox file to read (default: {DEFAULT_OUTBOX_PATH})")
    tail.add_argument("--bootstrap", help="Kafka bootstrap host:port[,host:port...]: read the topic instead")
    tail.add_argument("--topic", help="Kafka topic (with --bootstrap)")
    tail.add_argument("--group", default="alerts-tail", help="consumer group (default: alerts-tail)")
    start = tail.add_mutually_exclusive_group()
    start.add_argument(
        "--from-beginning",
        action="store_true",
        help="read each partition from its start, not from the group's",
    )
    start.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only events since WHEN: a duration back from now (90s, 15m, 2h, 7d) or an ISO 8601 time (no zone: "
        "UTC); the outbox keeps delivered events for its retention (outbox.retention_h)",
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
    _add_kafka_security(tail)
    tail.set_defaults(func=_cmd_tail)


def _add_consume(sub: Any) -> None:
    consume = sub.add_parser(
        "consume",
        help="deliver events from a Kafka topic to stdout, a JSON-lines file or a webhook",
        description="Consume the topic as a member of a consumer group and hand each event to a sink. Offsets"
        " are committed only after the sink took the message (at least once); duplicates (same event_id +"
        " seq) are dropped, across restarts too for a JSON-lines sink.",
    )
    consume.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logs")
    consume.add_argument("--bootstrap", help="Kafka bootstrap host:port[,host:port...] (or in --kafka-config)")
    consume.add_argument("--topic", help="Kafka topic (or in --kafka-config)")
    consume.add_argument("--group", required=True, help="consumer group: members share the partitions")
    start = consume.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="read each partition from its start")
    start.add_argument(
        "--from-time",
        type=_iso_time,
        metavar="ISO",
        help="read from the first message at or after this time (ISO 8601; no zone: UTC)",
    )
    start.add_argument(
        "--from-offset",
        type=_offsets,
        metavar="N|P:N,...",
        help="read from offset N of every partition, or from N of partition P",
    )
    consume.add_argument(
        "--sink",
        required=True,
        metavar="SPEC",
        help="stdout, jsonl:PATH (appended, fsynced), or webhook (POST, retried) with its URL from"
        " --webhook-url-file or $ALERTS_WEBHOOK_URL (webhook:URL works too, but puts the URL in the process list)",
    )
    consume.add_argument(
        "--webhook-url-file",
        type=Path,
        metavar="PATH",
        help="with --sink webhook: read the URL (a secret when it carries a token) from this file",
    )
    consume.add_argument(
        "--dead-letter",
        type=Path,
        metavar="PATH",
        help="write here (JSON lines, 0600) what cannot be handled, and go on: messages a webhook keeps failing, and"
        " records that are no readable event (the reason and the original bytes)",
    )
    consume.add_argument(
        "--on-future-schema",
        choices=("stop", "dead-letter"),
        default="stop",
        help="a message of a newer schema version than this consumer reads: stop with an error, uncommitted"
        " (default: upgrade, then it is read), or dead-letter it with a warning (needs --dead-letter)",
    )
    consume.add_argument(
        "--idle-timeout",
        type=_positive_float,
        metavar="S",
        help="exit after S seconds without a message (default: run until Ctrl-C or SIGTERM)",
    )
    consume.add_argument("--connect-timeout", type=_positive_float, default=10.0, metavar="S", help="default: 10")
    consume.add_argument(
        "--webhook-timeout", type=_positive_float, default=5.0, metavar="S", help="per request (default: 5)"
    )
    consume.add_argument(
        "--webhook-attempts", type=_positive_int, default=5, metavar="N", help="tries per message (default: 5)"
    )
    consume.add_argument(
        "--webhook-backoff",
        type=_positive_float,
        default=0.5,
        metavar="S",
        help="first pause between tries, doubling up to 10 s (default: 0.5)",
    )
    _add_kafka_security(consume)
    consume.set_defaults(func=_cmd_consume)


KAFKA_PASSWORD_ENV = "ALERTS_KAFKA_PASSWORD"  # noqa: S105 - the variable's name, not a password
_SECURITY_FLAGS = {  # option dest -> KafkaSettings field
    "bootstrap": "bootstrap",
    "topic": "topic",
    "security_protocol": "security_protocol",
    "sasl_mechanism": "sasl_mechanism",
    "username": "username",
    "ssl_cafile": "ssl_cafile",
    "ssl_certfile": "ssl_certfile",
    "ssl_keyfile": "ssl_keyfile",
}


def _add_kafka_security(sub: argparse.ArgumentParser) -> None:
    """The daemon's Kafka security settings, for a consumer: a file, or flags (which win over it)."""
    group = sub.add_argument_group(
        "Kafka security (as the daemon's kafka: section)",
        f"The SASL password never goes on the command line: --password-file PATH or ${KAFKA_PASSWORD_ENV}.",
    )
    group.add_argument(
        "--kafka-config",
        type=Path,
        metavar="YAML",
        help="the Kafka settings from a YAML file: the daemon's config (its kafka: section) or that section alone;"
        " paths in it are relative to the file",
    )
    group.add_argument("--security-protocol", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    group.add_argument("--sasl-mechanism", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    group.add_argument("--username", help="SASL user name")
    group.add_argument("--password-file", type=Path, metavar="PATH", help="file holding the SASL password")
    group.add_argument("--ssl-cafile", type=Path, metavar="PEM", help="CA(s) that signed the brokers' certificates")
    group.add_argument("--ssl-certfile", type=Path, metavar="PEM", help="client certificate (mutual TLS)")
    group.add_argument("--ssl-keyfile", type=Path, metavar="PEM", help="its private key")


def _cmd_tail(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.kafka_config is not None and args.bootstrap is None:
        args.bootstrap = _kafka_file(args.kafka_config, parser).get("bootstrap")
    if args.bootstrap is None:
        if args.topic is not None or args.from_beginning or args.group != "alerts-tail":
            parser.error("--topic, --group and --from-beginning need --bootstrap")
        return _tail_outbox(args.outbox or DEFAULT_OUTBOX_PATH, follow=args.follow, as_json=args.json, since=args.since)
    if args.topic is None and "topic" not in (_kafka_file(args.kafka_config, parser) if args.kafka_config else {}):
        parser.error("--bootstrap needs --topic")
    if args.outbox is not None:
        parser.error("--outbox and --bootstrap are alternatives")
    return _tail_kafka(args, parser)


def _tail_outbox(path: Path, *, follow: bool, as_json: bool, since: datetime | None = None) -> int:
    try:
        outbox = Outbox(path, readonly=True)
    except OutboxNotFoundError:
        _error(f"no outbox at {path} (is the daemon configured with another outbox path?)")
        return 1
    with outbox:
        after = outbox.id_before(since.timestamp()) if since is not None else 0
        return _until_ctrl_c(
            lambda stop: _print_outbox(outbox, follow=follow, as_json=as_json, stop=stop, after_id=after)
        )


def _print_outbox(outbox: Outbox, *, follow: bool, as_json: bool, stop: threading.Event, after_id: int = 0) -> None:
    from alerts.consumer import read_outbox

    for row in read_outbox(outbox, after_id=after_id, follow=follow, stop=stop):
        if as_json:
            _emit(sys.stdout, printable(row.payload.decode("utf-8", errors="replace")))
            continue
        try:
            msg = row.message()
        except MessageFormatError as exc:
            _emit(sys.stdout, printable(f"# row {row.id}: {exc}"))
            continue
        _emit(sys.stdout, format_event(msg))


def _kafka_settings(args: argparse.Namespace, parser: argparse.ArgumentParser, client_id: str) -> KafkaSettings:
    """The Kafka connection: the --kafka-config file, then the flags over it, the password from --password-file or
    $ALERTS_KAFKA_PASSWORD. A bad value is a usage error naming its option."""
    from alerts.publisher import KafkaSettings

    data: dict[str, object] = dict(_kafka_file(args.kafka_config, parser)) if args.kafka_config else {}
    for dest, name in _SECURITY_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            data[name] = value
    if args.password_file is not None:
        try:
            data["password"] = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"--password-file {args.password_file}: {getattr(exc, 'strerror', None) or exc}")
    elif os.environ.get(KAFKA_PASSWORD_ENV):
        data["password"] = os.environ[KAFKA_PASSWORD_ENV]
    if "bootstrap" not in data or "topic" not in data:
        parser.error("--bootstrap and --topic are needed (or bootstrap: and topic: in --kafka-config)")
    data.update(client_id=client_id, connect_timeout_s=args.connect_timeout)
    try:
        return KafkaSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_option(e["loc"]) + f": {e['msg']}" for e in exc.errors())
        parser.error(problems)


def _option(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "kafka"
    return f"--{name.replace('_', '-')}" if name in _SECURITY_FLAGS or name == "password" else name


def _kafka_file(path: Path, parser: argparse.ArgumentParser) -> dict[str, object]:
    """The ``kafka:`` section of a daemon config (or a file holding only that section), paths made absolute."""
    import yaml

    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 20)
        doc = yaml.safe_load(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        parser.error(f"--kafka-config {path}: {getattr(exc, 'strerror', None) or exc}")
    section = doc.get("kafka", doc) if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        parser.error(f"--kafka-config {path}: no kafka: settings in it")
    out = dict(section)
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = out.get(name)
        if isinstance(value, str) and not Path(value).is_absolute():
            out[name] = str(path.parent / value)
    return out


def _tail_kafka(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    settings = _kafka_settings(args, parser, "alerts-tail")
    return _until_ctrl_c(lambda stop: _print_kafka(args, settings, stop))  # commits what it printed


def _print_kafka(args: argparse.Namespace, settings: KafkaSettings, stop: threading.Event) -> None:
    from alerts.consumer import StartAt, Subscriber

    with Subscriber(
        settings,
        group_id=args.group,
        start=StartAt(beginning=args.from_beginning, time=args.since),
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


def _cmd_consume(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from alerts.consumer import StartAt, Subscriber
    from alerts.sinks import DeadLetterFile, open_sink

    if args.webhook_url_file is not None and args.sink != "webhook":
        parser.error("--webhook-url-file goes with --sink webhook")
    if args.on_future_schema == "dead-letter" and args.dead_letter is None:
        parser.error("--on-future-schema dead-letter needs --dead-letter PATH")
    settings = _kafka_settings(args, parser, "alerts-consume")
    try:
        dead = DeadLetterFile(args.dead_letter) if args.dead_letter is not None else None
        sink = open_sink(
            args.sink,
            dead_letter=dead,
            webhook_timeout_s=args.webhook_timeout,
            webhook_attempts=args.webhook_attempts,
            webhook_backoff_s=min(args.webhook_backoff, 10.0),
            webhook_url_file=args.webhook_url_file,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.sink.startswith("webhook:"):
        log.warning(
            "the webhook URL is on the command line, where every user of this machine can read it (ps):"
            " prefer --webhook-url-file or $ALERTS_WEBHOOK_URL"
        )
    # the longest one message can take the sink: the group must not drop this member while it waits
    budget = float(getattr(sink, "worst_case_s", _SINK_BUDGET_S))
    start = StartAt(beginning=args.from_beginning, offset=args.from_offset, time=args.from_time)
    stop = threading.Event()
    restore = _stop_on_signals(stop, signal.SIGTERM)
    handled = 0
    try:
        with Subscriber(
            settings,
            group_id=args.group,
            start=start,
            seen=sink.recent_keys(),
            session_timeout_s=10.0,
            heartbeat_interval_s=2.0,
            dead_letter=dead,
            on_future_schema=args.on_future_schema,
            handle_budget_s=budget,
            max_poll_interval_s=max(300.0, 2 * budget + 60.0),
        ) as sub:
            try:
                stream = sub.messages(idle_timeout_s=args.idle_timeout, stop=stop)
                with contextlib.closing(stream):  # type: ignore[type-var]
                    for msg in stream:
                        sink.deliver(msg)  # raises SinkError: the message stays uncommitted
                        handled += 1
            finally:
                st = sub.stats()
                undelivered = getattr(getattr(sink, "stats", None), "dead_lettered", 0)
                sys.stderr.write(
                    redact_text(
                        f"{PROG} consume: {handled} delivered to {sink.name}, {st.duplicates} duplicate(s) dropped,"
                        f" {st.invalid} invalid ({st.dead_lettered} of them dead-lettered),"
                        f" {undelivered} undeliverable dead-lettered\n"
                    )
                )
    finally:
        sink.close()
        if dead is not None:
            dead.close()
        restore()
    return 0


def _until_ctrl_c(body: Callable[[threading.Event], None]) -> int:
    """Run ``body(stop)`` with Ctrl-C setting ``stop`` (read by its loop) instead of raising KeyboardInterrupt
    wherever it lands: raised between the outbox taking its lock and a read's with-block, it left the lock held,
    and closing the outbox on the way out then waited for it forever (seen once in CI: `alerts tail --follow`
    ignored Ctrl-C). Exit status 130 when Ctrl-C ended it, else 0."""
    stop = threading.Event()
    restore = _stop_on_signals(stop, signal.SIGINT)
    try:
        body(stop)
    finally:
        restore()
    return 130 if stop.is_set() else 0


def _stop_on_signals(stop: threading.Event, *signums: int) -> Callable[[], None]:
    """Until ``restore()``, the first of these signals sets ``stop`` (which the loops only read: see
    ``read_outbox``); a second one is handled as before (Ctrl-C twice: KeyboardInterrupt, wherever it lands)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signum, old[signum])

    old = {s: signal.signal(s, handler) for s in signums}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore


def _emit(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: {redact_text(message)}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _iso_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (2026-05-01T12:00:00Z)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(text: str) -> datetime:
    """``--since``: a duration back from now (``90s``, ``15m``, ``2h``, ``7d``) or an ISO 8601 time."""
    number, unit = text[:-1], text[-1:].lower()
    if unit in _UNITS and number.replace(".", "", 1).isdigit():
        return datetime.now(timezone.utc) - timedelta(seconds=float(number) * _UNITS[unit])
    try:
        return _iso_time(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (90s, 15m, 2h, 7d) nor an ISO 8601 time (2026-05-01T12:00:00Z)"
        ) from None


def _offsets(text: str) -> int | dict[int, int]:
    try:
        if ":" not in text:
            offset = int(text)
            if offset < 0:
                raise ValueError
            return offset
        pairs = {}
        for part in text.split(","):
            p, _, n = part.partition(":")
            partition, offset = int(p), int(n)
            if partition < 0 or offset < 0:
                raise ValueError
            pairs[partition] = offset
        return pairs
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use N (every partition) or P:N[,P:N...]") from None


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
