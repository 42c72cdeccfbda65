"""What ``edge bench`` reads of the machine while it measures: CPU seconds of processes and of this process's
threads by role (``/proc``), resident memory and its peak (``RssSampler``), the load average, and how much CPU the
machine gives right now (``cores_available``: other tenants take the rest). Linux only.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(stat_path: str) -> list[str] | None:
    """The fields of a ``/proc/.../stat`` after the command name (``[0]`` is the state, ``[1]`` the parent's pid,
    ``[11:15]`` utime, stime, cutime, cstime in ticks); None once the process or thread is gone."""
    try:
        with open(stat_path) as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _own_cpu_seconds(fields: list[str]) -> float:
    """utime + stime of ``_stat_fields``, in seconds."""
    return (int(fields[11]) + int(fields[12])) / _TICK


def _proc_cpu_seconds(stat_path: str) -> float:
    fields = _stat_fields(stat_path)
    return _own_cpu_seconds(fields) if fields else 0.0


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and of every process below it that has ended or is a live child: its reaped
    children's (``RUSAGE_CHILDREN``), and each live child's own with what that child reaped (``cutime`` /
    ``cstime``: multiprocessing's fork server reaps the capture processes it forked)."""
    import resource

    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    me = os.getpid()
    for entry in os.listdir("/proc"):
        fields = _stat_fields(f"/proc/{entry}/stat") if entry.isdigit() else None
        if fields is not None and int(fields[1]) == me:
            total += sum(int(x) for x in fields[11:15]) / _TICK
    return total


def rss_mb(pid: int | None = None) -> float:
    """VmRSS in MB of this process, or of ``pid`` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid if pid is not None else 'self'}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def thread_cpu() -> dict[str, float]:
    """CPU seconds by role: Python threads by name, the rest (FFmpeg's decoder threads, ORT pools) as ``native``."""
    roles: dict[str, float] = {}
    named = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    for tid in os.listdir("/proc/self/task"):
        name = named.get(int(tid))
        if name is None:
            role = "native"
        elif name.startswith(("capture-", "bench-decode-")):
            role = "capture"
        elif name == "scoring":
            role = "scoring"
        else:
            role = "other"
        roles[role] = roles.get(role, 0.0) + _proc_cpu_seconds(f"/proc/self/task/{tid}/stat")
    return roles


def process_cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each of ``pids`` that is still there."""
    out = {}
    for pid in pids:
        fields = _stat_fields(f"/proc/{pid}/stat")
        if fields is not None:
            out[pid] = _own_cpu_seconds(fields)
    return out


class RssSampler:
    """Peak VmRSS while running, sampled every 0.1 s (a thread): this process's, plus that of the processes
    ``children`` names when it is set (the capture processes of ``isolation: process``)."""

    def __init__(self) -> None:
        self.children: Callable[[], Iterable[int]] | None = None
        self.peak = rss_mb()
        self.children_peak = 0.0  # of the children's sum alone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        children = self.children
        kids = sum(rss_mb(pid) for pid in children()) if children is not None else 0.0
        self.children_peak = max(self.children_peak, kids)
        self.peak = max(self.peak, rss_mb() + kids)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


_BURN = "import time\nt=time.monotonic()+{s}\nwhile time.monotonic()<t: pass\nprint(time.process_time())"


def cores_available(seconds: float = 1.0) -> float:
    """CPU the machine gives right now to one busy process per CPU (other tenants take the rest)."""
    n = os.cpu_count() or 1
    procs = [
        subprocess.Popen([sys.executable, "-c", _BURN.format(s=seconds)], stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    used = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 30)
        with contextlib.suppress(ValueError):
            used += float(out.strip() or 0)
    return round(used / seconds, 2)


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
