"""A consumer that is killed (SIGKILL, by itself) right after its handler finished a message and before the
offsets of its batch were committed: ``python consume_then_die.py BOOTSTRAP TOPIC GROUP JSONL DIE_AFTER``.

It reads from the beginning into a JSON-lines sink, as ``alerts consume --sink jsonl:`` does, and kills itself
once ``DIE_AFTER`` messages were written. Used by tests/test_delivery_faults.py.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alerts.consumer import StartAt, Subscriber  # noqa: E402
from alerts.publisher import KafkaSettings  # noqa: E402
from alerts.sinks import JsonlSink  # noqa: E402


def main() -> None:
    bootstrap, topic, group, path, die_after = sys.argv[1:6]
    sink = JsonlSink(path)
    settings = KafkaSettings(bootstrap=bootstrap, topic=topic, connect_timeout_s=5.0)
    sub = Subscriber(
        settings,
        group_id=group,
        start=StartAt(beginning=True),
        seen=sink.recent_keys(),
        session_timeout_s=6.0,
        heartbeat_interval_s=1.0,
    )
    handled = 0
    for msg in sub.messages(assignment_timeout_s=30.0):
        sink.deliver(msg)
        handled += 1
        if handled == int(die_after):
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
