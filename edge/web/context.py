"""What the console reads: the event store, the media directory and, inside a running daemon, the live view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.live import LiveView


@dataclass
class ConsoleContext:
    """``store_path``: the outbox file (the event store is in it); ``media_dir``: where snapshots and clips are.
    ``live`` and ``cameras`` come from a running daemon (``edge run``): its live view, and a function returning
    each camera's capture state and counters (``Daemon.snapshot().cameras``) plus its open offline alert;
    ``edge console`` over a finished run has neither."""

    store_path: Path
    media_dir: Path
    site: str = "default"
    live: LiveView | None = None
    cameras: Callable[[], dict[str, dict[str, Any]]] | None = None
