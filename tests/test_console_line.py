"""One console line per event: ``edge run`` / ``edge replay`` print as events are decided exactly what
``alerts tail`` prints from the outbox afterwards (``alerts.console.format_event``)."""

from __future__ import annotations

import pytest
from conftest import SAMPLES

from alerts.cli import main as alerts_main
from alerts.console import format_event
from alerts.outbox import Outbox
from edge.cli import main as edge_main


@pytest.mark.timeout(120)
def test_the_daemon_and_alerts_tail_print_the_same_line_for_each_event(tmp_path, capsys):
    outbox = tmp_path / "outbox.db"
    assert edge_main(["replay", str(SAMPLES / "test_1.mkv"), "--outbox", str(outbox)]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(("--", "   "))]
    with Outbox(outbox, readonly=True) as box:
        messages = [row.message() for row in box.read(limit=1000)]
    assert len(messages) >= 2 and printed == [format_event(m) for m in messages]
    assert alerts_main(["tail", "--outbox", str(outbox)]) == 0
    assert capsys.readouterr().out.splitlines() == printed
    end = next(line for line in printed if "  end  " in line)
    assert " pts " in end and ("reason=eof" in end or "reason=quiet" in end)
