"""Tell a service manager what the daemon is doing: systemd's ``sd_notify`` protocol, without a dependency.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a unix datagram socket: a path, or an abstract name
written with a leading ``@``) and, with ``WatchdogSec=``, ``WATCHDOG_USEC``. The daemon sends ``READY=1`` once its
cameras are opened, ``WATCHDOG=1`` every half watchdog interval while its main loop runs, and ``STOPPING=1`` when it
starts to drain. Without ``NOTIFY_SOCKET`` (a terminal, a test) every call does nothing. A message that cannot be
sent is logged and counted, never raised: the manager's view is not worth stopping the cameras for.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """The daemon's side of ``sd_notify``: one datagram per state change or watchdog ping."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = self._parse_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = self._parse_watchdog(env)
        self.failures = 0
        self._stopping = False

    @staticmethod
    def _parse_address(value: str) -> str | None:
        if value.startswith("@"):  # abstract namespace: a leading NUL byte on the wire
            return "\0" + value[1:]
        if value.startswith("/"):
            return value
        if value:
            log.warning("NOTIFY_SOCKET %r is neither a path nor an abstract name: not notifying", value)
        return None

    @staticmethod
    def _parse_watchdog(env: Mapping[str, str]) -> float | None:
        """Half of ``WATCHDOG_USEC`` in seconds (systemd's advice), when the watchdog is meant for this process."""
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if pid and pid != str(os.getpid()):
            return None
        try:
            value = int(usec)
        except ValueError:
            return None
        return value / 2e6 if value > 0 else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``KEY=value``) as one message; False when there is no socket or it refused."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(1.0)
                sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning("sd_notify %s: %s (%d failure(s))", fields[0] if fields else "", exc, self.failures)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """``STOPPING=1``, once: the drain has begun."""
        if self._stopping:
            return False
        self._stopping = True
        return self.notify("STOPPING=1", "STATUS=stopping: draining cameras and the outbox")
