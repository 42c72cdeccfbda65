"""``edge simulate``: serve media files as looping live RTSP cameras, for rehearsing a site without its cameras.

    edge simulate clip.mkv                                   # rtsp://127.0.0.1:8554/cam1
    edge simulate --mount door=a.mkv --mount yard=b.mp4      # two cameras on one server
    edge simulate clip.mkv --corrupt cam1                    # a camera that sends garbage
    edge simulate clip.mkv --freeze-after 10                 # a camera that freezes after 10 s
    edge simulate clip.mkv --substream 640x360               # also rtsp://127.0.0.1:8554/cam1-sub, at 640x360

The server is ``edge/rtsp_simulator.py`` (GStreamer's RTSP server; files: Matroska or MP4/MOV with H.264 or
H.265 video and/or AAC, Opus or G.711 audio), run under Debian's ``/usr/bin/python3`` because GStreamer's Python
bindings exist for the system Python only (``make system-deps`` installs them). This command checks for them,
starts the server, prints each camera's URL on stdout once it listens, and runs until Ctrl-C or SIGTERM; the
server's log goes to stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO

from edge.substream import ensure_substream, parse_size

SYSTEM_PYTHON = "/usr/bin/python3"
SIMULATOR = Path(__file__).resolve().with_name("rtsp_simulator.py")
EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
_GI_CHECK = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstPbutils', '1.0'); "
    "gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, GstPbutils, GstRtspServer"
)
_GI_CHECK_TIMEOUT_S = 30
_STOP_TIMEOUT_S = 10
SUBSTREAM_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lepton-edge" / "substreams"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``simulate`` on the ``edge`` command's subparsers."""
    p = subparsers.add_parser(
        "simulate",
        help="serve media files as looping live RTSP cameras (rehearsals, demos, fault drills)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("clip", nargs="?", help="a clip to serve at --path")
    p.add_argument("--path", default="cam1", help="where CLIP is served: rtsp://HOST:PORT/PATH (default cam1)")
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="NAME=CLIP",
        help="also serve CLIP at rtsp://HOST:PORT/NAME (repeatable)",
    )
    p.add_argument("--port", type=int, default=8554, help="TCP port (default 8554; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--shared",
        action="store_true",
        help="all viewers of a path share one live stream (default: each starts at the clip's start)",
    )
    p.add_argument(
        "--corrupt",
        action="append",
        default=[],
        metavar="NAME",
        help="fault drill: camera NAME sends corrupted data (repeatable)",
    )
    p.add_argument(
        "--freeze-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fault drill: every camera stops sending after SECONDS, keeping the connection open",
    )
    p.add_argument(
        "--substream",
        type=parse_size,
        default=None,
        metavar="WxH",
        help="also serve each camera's clip scaled to WxH at PATH-sub, as a camera's detect substream "
        "(made once, kept in --substream-dir)",
    )
    p.add_argument(
        "--substream-dir",
        type=Path,
        default=SUBSTREAM_CACHE,
        help=f"where substreams are kept (default {SUBSTREAM_CACHE})",
    )
    p.set_defaults(func=cmd_simulate)
    return p


def cmd_simulate(args: argparse.Namespace) -> int:
    mounts = _mounts(args)
    if isinstance(mounts, str):
        return _fail(mounts, EXIT_USAGE)
    problem = gstreamer_problem()
    if problem is not None:
        return _fail(f"{problem}; install GStreamer's RTSP server and its Python bindings with: make system-deps")
    if args.substream is not None:
        try:
            mounts = _with_substreams(mounts, args.substream, args.substream_dir)
        except (OSError, ValueError) as exc:  # av's errors are OSError / ValueError subclasses
            return _fail(f"cannot make the substreams: {exc}")
    cmd = [SYSTEM_PYTHON, str(SIMULATOR), "--host", args.host, "--port", str(args.port)]
    for name, clip in mounts:
        cmd += ["--mount", f"{name}={clip}"]
    for name in args.corrupt:
        cmd += ["--corrupt", name]
    if args.shared:
        cmd.append("--shared")
    if args.freeze_after is not None:
        cmd += ["--freeze-after", str(args.freeze_after)]
    if getattr(args, "verbose", 0) >= 2:
        cmd.append("--verbose")
    return _serve(cmd, [name for name, _ in mounts])


def _with_substreams(mounts: list[tuple[str, Path]], size: tuple[int, int], folder: Path) -> list[tuple[str, Path]]:
    """Each mount, then its substream at ``NAME-sub`` (``edge.substream``)."""
    names = {name for name, _ in mounts}
    out = []
    for name, clip in mounts:
        sub = f"{name}-sub"
        if sub in names:
            raise ValueError(f"{sub} is already a camera path")
        print(f"substream of {clip.name} at {size[0]}x{size[1]} ...", file=sys.stderr, flush=True)
        out += [(name, clip), (sub, ensure_substream(clip, size, folder))]
    return out


def gstreamer_problem() -> str | None:
    """Why the simulator cannot run here, or None when it can."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (the RTSP simulator runs under the system's Python)"
    try:
        result = subprocess.run(
            [SYSTEM_PYTHON, "-c", _GI_CHECK], capture_output=True, text=True, timeout=_GI_CHECK_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return f"{SYSTEM_PYTHON} took over {_GI_CHECK_TIMEOUT_S} s to load GStreamer's Python bindings"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no error output"])[-1]
        return f"{SYSTEM_PYTHON} cannot load GStreamer's RTSP server bindings ({last})"
    return None


def _mounts(args: argparse.Namespace) -> list[tuple[str, Path]] | str:
    """The (name, clip) pairs to serve, or the one-line reason they are wrong."""
    pairs: list[tuple[str, str]] = []
    if args.clip:
        pairs.append((args.path.strip("/"), args.clip))
    for text in args.mount:
        name, sep, clip = text.partition("=")
        if not sep or not name.strip("/") or not clip:
            return f"--mount expects NAME=CLIP, got {text!r}"
        pairs.append((name.strip("/"), clip))
    if not pairs:
        return "nothing to serve: give a clip, or --mount NAME=CLIP"
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names) or any("/" in n or not n for n in names):
        return f"camera paths must be unique single names, got {names}"
    unknown = sorted(set(args.corrupt) - set(names))
    if unknown:
        return f"--corrupt names no camera: {', '.join(unknown)} (cameras: {', '.join(names)})"
    if args.freeze_after is not None and not args.freeze_after > 0:
        return "--freeze-after must be a positive number of seconds"
    result = []
    for name, clip in pairs:
        path = Path(clip).expanduser()
        if not path.is_file():
            return f"{clip}: no such file"
        result.append((name, path.resolve()))
    return result


def _serve(cmd: list[str], names: list[str]) -> int:
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, preexec_fn=die_with_parent)
    assert proc.stdout is not None

    def forward(signum: int, frame: FrameType | None) -> None:
        proc.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        line = proc.stdout.readline().decode(errors="replace").strip()
        if not line.startswith("READY "):
            status = proc.wait(_STOP_TIMEOUT_S)
            return _fail(
                f"the RTSP simulator stopped before serving (status {status}; its log is above)",
                EXIT_USAGE if status == EXIT_USAGE else EXIT_RUNTIME,
            )
        base = line.removeprefix("READY ")
        for name in names:
            print(f"serving {base}/{name}")
        print("Ctrl-C stops the cameras", flush=True)
        try:
            status = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(_STOP_TIMEOUT_S)
        return EXIT_OK if status in (0, -signal.SIGINT, -signal.SIGTERM) else EXIT_RUNTIME
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies, so no camera server outlives ``edge simulate``,
    a benchmark or a killed test run. (Linux ties this to the thread that started the child.)"""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def read_ready_line(stdout: IO[bytes], timeout: float) -> str:
    """The simulator's first line (``READY rtsp://HOST:PORT`` once it listens), read without blocking past
    ``timeout``. Raises ``TimeoutError`` when nothing came in time and ``EOFError`` when the process closed its
    stdout (it exited); the caller knows where the simulator's log is and says so."""
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the RTSP simulator printed no READY line within {timeout:g} s")
            if not selector.select(remaining):
                continue
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                raise EOFError("the RTSP simulator exited before it was ready")
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode(errors="replace").strip()


def _fail(message: str, code: int = EXIT_RUNTIME) -> int:
    print(f"edge simulate: {message}", file=sys.stderr)
    return code
