"""RTSP camera simulator: serve media files as looping live RTSP cameras.

For integration tests and site rehearsals: each given file (Matroska, or MP4/MOV; H.264 or H.265 video and/or AAC,
Opus or G.711 audio) is served at ``rtsp://HOST:PORT/NAME`` and looped forever, a camera that never ends::

    /usr/bin/python3 edge/rtsp_simulator.py --port 8554 --mount cam1=a.mkv --mount cam2=b.mkv

Once it listens it prints exactly one line, ``READY rtsp://HOST:PORT``, on stdout (``--port 0`` picks a free port
and that line says which); everything else goes to stderr. SIGTERM or SIGINT stop it with exit status 0; a bad file
or a port already taken stop it with status 2 before ``READY``.

Clock and sharing: by default every client gets its own media, which starts at the beginning of the file when the
client sends PLAY, so its pts are file time + k x loop length (the loop length is the file's true length:
``LoopClock``) and tests can align ground truth with them. With ``--shared`` all clients of a mount share one live
media, like a real camera: a later client starts mid-file. How the pipeline is built and loops: ``build_launch``,
``LoopingMedia``.

Fault modes: ``--corrupt NAME`` garbles the payload of that mount (RTP headers, SDP and RTCP stay valid);
``--freeze-after SECONDS`` stops every media's data after that long while the connection stays open (``Freezer``).

It runs under Debian's /usr/bin/python3: the RTSP server is GStreamer's (gst-rtsp-server) through GObject
introspection (``gi``), whose bindings, typelibs and plugins are Debian packages built against the system Python
(``tests/fixtures/rtsp.py: RTSP_DEBIAN_PACKAGES``). So it uses only the standard library and ``gi``, imports nothing
from the project, and runs as a separate process (which also lets tests kill the "camera").
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstPbutils", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstPbutils, GstRtspServer  # noqa: E402

# Before the GObject subclasses below are registered: their vfuncs name GStreamer types.
Gst.init(None)

log = logging.getLogger("rtsp_simulator")

EXIT_USAGE = 2
DISCOVER_TIMEOUT_S = 10
SEGMENT_WAIT_S = 10.0  # after the looping seek, how long a client's answer waits for the streams' segments

# Container caps name -> demuxer.
DEMUXERS = {
    "video/x-matroska": "matroskademux",
    "audio/x-matroska": "matroskademux",
    "video/webm": "matroskademux",
    "audio/webm": "matroskademux",
    "video/quicktime": "qtdemux",
}
# Elementary stream caps name -> "parser ! payloader" (without the payloader's name/pt).
VIDEO_BRANCHES = {
    "video/x-h264": "h264parse config-interval=-1 ! rtph264pay",
    "video/x-h265": "h265parse config-interval=-1 ! rtph265pay",
}
AUDIO_BRANCHES = {
    "audio/mpeg": "aacparse ! rtpmp4gpay",  # mpegversion 2/4 is checked in probe_media
    "audio/x-opus": "opusparse ! rtpopuspay",
    "audio/x-alaw": "rtppcmapay",  # G.711 (MP4/MOV only: Matroska has no G.711)
    "audio/x-mulaw": "rtppcmupay",
}
VIDEO_PT = 96
AUDIO_PT = 97
# --corrupt: the probability of each payload byte being randomised. At 5 % hardly a packet decodes (FFmpeg
# over RTSP: no video frame at all, nearly every AAC packet rejected): a camera sending garbage. (At 1 % H.264
# still conceals its way to frames while AAC fails.)
CORRUPT_PROBABILITY = 0.05


class SimulatorError(Exception):
    """A mount that cannot be served, or a server that cannot listen; the message says why."""


@dataclass(frozen=True)
class MediaLayout:
    """What one file holds, as far as serving it is concerned."""

    path: Path
    demuxer: str
    video: str | None  # caps name of the first video stream, or None
    audio: str | None  # caps name of the first audio stream, or None
    duration_s: float


def probe_media(path: Path) -> MediaLayout:
    """Find the container and the first video and audio stream of ``path``; raise if we cannot serve it."""
    if not path.is_file():
        raise SimulatorError(f"{path}: no such file")
    discoverer = GstPbutils.Discoverer.new(DISCOVER_TIMEOUT_S * Gst.SECOND)
    try:
        info = discoverer.discover_uri(Gst.filename_to_uri(str(path.resolve())))
    except GLib.Error as exc:
        raise SimulatorError(f"{path}: cannot read media: {exc.message}") from exc
    container = info.get_stream_info()
    container_caps = container.get_caps() if container is not None else None
    container_name = container_caps.get_structure(0).get_name() if container_caps else "?"
    demuxer = DEMUXERS.get(container_name)
    if demuxer is None:
        raise SimulatorError(
            f"{path}: container {container_name} not supported (supported: {', '.join(sorted(DEMUXERS))})"
        )
    video = audio = None
    for stream in info.get_stream_list():
        caps = stream.get_caps()
        if caps is None:
            continue
        structure = caps.get_structure(0)
        name = structure.get_name()
        if isinstance(stream, GstPbutils.DiscovererVideoInfo) and video is None:
            if name not in VIDEO_BRANCHES:
                raise SimulatorError(
                    f"{path}: video codec {name} not supported (supported: {', '.join(VIDEO_BRANCHES)})"
                )
            video = name
        elif isinstance(stream, GstPbutils.DiscovererAudioInfo) and audio is None:
            ok, version = structure.get_int("mpegversion")
            if name not in AUDIO_BRANCHES or (name == "audio/mpeg" and (not ok or version not in (2, 4))):
                raise SimulatorError(
                    f"{path}: audio codec {caps.to_string()} not supported (AAC, Opus, G.711 A-law or mu-law)"
                )
            audio = name
    if video is None and audio is None:
        raise SimulatorError(f"{path}: no video or audio stream")
    return MediaLayout(path, demuxer, video, audio, info.get_duration() / Gst.SECOND)


def build_launch(layout: MediaLayout, *, corrupt: bool = False) -> str:
    """The gst-launch description of one media; the file location is set on ``src`` after parsing::

        filesrc ! matroskademux name=demux                       (qtdemux for MP4)
          demux.video_0 ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96
          demux.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97

    ``config-interval=-1`` repeats SPS/PPS before every IDR frame, so a client that joins late (or reconnects)
    can decode from the next keyframe, as with a real camera. A file with only video or only audio gets only
    that branch; its payloader is then ``pay0``. The file is probed once at start-up (``probe_media``) to know
    which branches to build: a branch whose pad never appears would block the media's preroll.

    ``corrupt`` puts a ``breakmydata`` before each payloader: payload bytes are randomised with probability
    ``CORRUPT_PROBABILITY`` while RTP headers, SDP and RTCP stay valid, as with a camera whose encoder or
    network mangles data. (The parameter sets in the SDP come from the caps and stay intact too.)
    """
    parts = [f"filesrc name=src ! {layout.demuxer} name=demux"]
    branches = []
    if layout.video is not None:
        branches.append(("demux.video_0", VIDEO_BRANCHES[layout.video], VIDEO_PT))
    if layout.audio is not None:
        branches.append(("demux.audio_0", AUDIO_BRANCHES[layout.audio], AUDIO_PT))
    for index, (pad, chain, pt) in enumerate(branches):
        *elements, payloader = chain.split(" ! ")
        if corrupt:
            elements.append(f"breakmydata probability={CORRUPT_PROBABILITY} seed={index + 1}")
        parts.append(" ! ".join([f"{pad} ! queue", *elements, f"{payloader} name=pay{index} pt={pt}"]))
    return "  ".join(parts)


def _answer_not_seekable(pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
    query = info.get_query()
    if query is None or query.type != Gst.QueryType.SEEKING:
        return Gst.PadProbeReturn.OK
    # A new SEEKING query already says "not seekable"; answering it untouched is enough. (Python cannot
    # set_seeking() here anyway: the binding holds a second reference, so the query is not writable.)
    return Gst.PadProbeReturn.HANDLED


class LoopClock:
    """Makes each pass of the file start exactly where the previous one ended, in running time.

    A demuxer bases the next pass on its last position, which is the *start* of the last frame it read, so
    the first frame of pass k+1 would repeat the time of the last frame of pass k (a duplicate pts at every
    loop point). The file really ends at the end of its last frame (pts + duration), on whichever stream
    ends last. This object records that end while a pass is read (a probe on each demuxer pad), and shifts
    each later pass with a pad offset on the element after the demuxer, so that pass k+1 starts at that end.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passes = 0  # finished passes
        self._pass_start = 0  # target running time (ns) of the current pass's start
        self._pass_end = 0  # end (file time, ns) of the latest frame seen in the current pass
        self._last_pts: dict[str, int] = {}

    def watch(self, pad: Gst.Pad) -> None:
        """Observe a demuxer source pad (call on pad-added)."""
        pad.add_probe(Gst.PadProbeType.BUFFER | Gst.PadProbeType.EVENT_DOWNSTREAM, self._probe)

    def next_pass(self) -> float:
        """The current pass is over (SEGMENT_DONE): the next one starts at its end. Returns its length (s)."""
        with self._lock:
            length = self._pass_end
            self._passes += 1
            self._pass_start += length
            self._pass_end = 0
            self._last_pts.clear()
        return length / Gst.SECOND

    def _probe(self, pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        if info.type & Gst.PadProbeType.BUFFER:
            self._saw_buffer(pad.get_name(), info.get_buffer())
        else:
            event = info.get_event()
            if event.type == Gst.EventType.SEGMENT:
                self._saw_segment(pad, event.parse_segment())
        return Gst.PadProbeReturn.OK

    def _saw_buffer(self, pad_name: str, buffer: Gst.Buffer) -> None:
        pts = buffer.pts
        if pts == Gst.CLOCK_TIME_NONE:
            return
        with self._lock:
            previous = self._last_pts.get(pad_name)
            if buffer.duration != Gst.CLOCK_TIME_NONE:
                duration = buffer.duration
            elif previous is not None and pts > previous:
                duration = pts - previous  # e.g. Matroska audio blocks carry no duration
            else:
                duration = 0
            self._last_pts[pad_name] = pts
            self._pass_end = max(self._pass_end, pts + duration)

    def _saw_segment(self, pad: Gst.Pad, segment: Gst.Segment) -> None:
        with self._lock:
            if self._passes == 0:
                return  # the first pass keeps the demuxer's own timing
            target = self._pass_start
        # The segment starts at file time 0, so its base is the running time at which the pass starts.
        offset = target - segment.to_running_time(Gst.Format.TIME, segment.start)
        peer = pad.get_peer()
        if peer is not None:
            peer.set_offset(offset)


class LoopingMedia(GstRtspServer.RTSPMedia):
    """A media that restarts its file at each SEGMENT_DONE instead of ending.

    A plain end-of-stream latches the demuxer's pads (EOS is sticky), so seeking back after EOS stalls. Instead
    each pass is a *segment* seek: once the media has prerolled, a flushing ``SEGMENT`` seek to 0 goes to the
    demuxer; at the end of the file the demuxer posts SEGMENT_DONE instead of sending EOS, and the bus handler
    answers with a non-flushing ``SEGMENT`` seek to 0, which keeps the running time (hence RTP timestamps) going;
    ``LoopClock`` starts each pass where the last one ended. (With AAC in Matroska GStreamer plays the encoder's
    priming frame instead of trimming it, so audio is one AAC frame later and longer than in the file.)

    FFmpeg sends ``Range: npt=0.000-`` with PLAY, which the server would turn into a flushing non-segment seek that
    ends the loop. So each payloader answers the pipeline's SEEKING query with "not seekable", and the server then
    ignores the Range header, as for a live camera. A client's first video frame (the IDR after SPS/PPS) decodes
    with pts None in PyAV (FFmpeg's doing); over TCP, a client of a shared media starts its pts at the file time
    the server reports in PLAY's Range, over UDP at 0. A shared media is torn down when its last client leaves.
    """

    __gtype_name__ = "LeptonLoopingMedia"

    def setup_looping(self, mount: str) -> None:
        """Called once the element exists (media-configure), before the pipeline starts."""
        self.mount = mount
        self.loop_clock = LoopClock()
        self.get_element().get_by_name("demux").connect("pad-added", self._on_pad_added)
        self.connect("prepared", self._on_prepared)

    def do_handle_message(self, message: Gst.Message) -> bool:
        if message.type == Gst.MessageType.SEGMENT_DONE:
            length = self.loop_clock.next_pass()
            log.debug("/%s: end of file after %.3f s, looping", self.mount, length)
            self._seek_start(flush=False)
            return True
        return GstRtspServer.RTSPMedia.do_handle_message(self, message)

    def _on_pad_added(self, demux: Gst.Element, pad: Gst.Pad) -> None:
        self.loop_clock.watch(pad)

    def _on_prepared(self, media: GstRtspServer.RTSPMedia) -> None:
        # The media has prerolled with a plain segment; replace it with a looping one from the start.
        self._seek_start(flush=True)
        self._wait_for_segments()

    def _wait_for_segments(self) -> None:
        """Hold the client's request until every stream has its segment again.

        The flushing seek clears the segment on each stream until the demuxer's new one flows through. A PLAY
        answered in that gap makes gst-rtsp-server 1.22 abort the whole server (``g_assert`` in
        ``gst_rtsp_media_get_rates``: "assertion failed: (FALSE)"), which a loaded machine hits when several
        clients connect at once. "prepared" is emitted in the thread answering the client, with no media lock
        held, so waiting here only delays that answer.
        """
        streams = [self.get_stream(i) for i in range(self.n_streams())]
        deadline = time.monotonic() + SEGMENT_WAIT_S
        while True:
            missing = [s.get_index() for s in streams if s.is_sender() and not s.get_rates()[0]]
            if not missing:
                return
            if time.monotonic() >= deadline:
                log.warning(
                    "/%s: streams %s have no segment %.0f s after the seek", self.mount, missing, SEGMENT_WAIT_S
                )
                return
            time.sleep(0.005)

    def _seek_start(self, *, flush: bool) -> None:
        # Sent to the demuxer, not the pipeline: until PLAY the pipeline has no sinks to route a seek.
        demux = self.get_element().get_by_name("demux")
        flags = Gst.SeekFlags.SEGMENT | (Gst.SeekFlags.FLUSH if flush else Gst.SeekFlags.NONE)
        if not demux.seek(1.0, Gst.Format.TIME, flags, Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1):
            log.error("/%s: seek to the start failed (flush=%s); the stream will end", self.mount, flush)


class Freezer:
    """``--freeze-after``: a media whose data stops after some seconds of playing, while its RTSP session and
    RTCP stay up; a client sees a camera that accepted the connection and then froze."""

    def __init__(self, mount: str, after_s: float) -> None:
        self.mount = mount
        self.after_s = after_s
        self._lock = threading.Lock()
        self._first: float | None = None
        self._frozen = False

    def watch(self, pad: Gst.Pad) -> None:
        pad.add_probe(Gst.PadProbeType.BUFFER, self._probe)

    def _probe(self, pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        now = time.monotonic()
        with self._lock:
            if self._first is None:
                self._first = now
            if now - self._first < self.after_s:
                return Gst.PadProbeReturn.OK
            if not self._frozen:
                self._frozen = True
                log.info("/%s: frozen after %.1f s (connection kept open)", self.mount, self.after_s)
        return Gst.PadProbeReturn.DROP


class FileCameraFactory(GstRtspServer.RTSPMediaFactory):
    """Builds one ``LoopingMedia`` per client (or one shared) for a probed file."""

    __gtype_name__ = "LeptonFileCameraFactory"

    def __init__(
        self,
        name: str,
        layout: MediaLayout,
        *,
        shared: bool,
        corrupt: bool = False,
        freeze_after_s: float | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.layout = layout
        self.freeze_after_s = freeze_after_s
        self.launch = build_launch(layout, corrupt=corrupt)
        self.set_shared(shared)
        self.set_media_gtype(LoopingMedia.__gtype__)
        try:  # fail at start, not at the first client, when a GStreamer plugin is missing
            self._build_element()
        except GLib.Error as exc:
            raise SimulatorError(
                f"{layout.path}: cannot build the pipeline: {exc.message} "
                "(Debian: gstreamer1.0-plugins-base, -good and -bad)"
            ) from exc

    def do_create_element(self, url: GstRtspServer.RTSPUrl) -> Gst.Element:
        return self._build_element()

    def _build_element(self) -> Gst.Element:
        element = Gst.parse_bin_from_description(self.launch, False)
        element.get_by_name("src").set_property("location", str(self.layout.path))
        return element

    def do_media_configure(self, media: GstRtspServer.RTSPMedia) -> None:
        element = media.get_element()
        freezer = Freezer(self.name, self.freeze_after_s) if self.freeze_after_s is not None else None
        index = 0
        while (pay := element.get_by_name(f"pay{index}")) is not None:
            pay.get_static_pad("src").add_probe(Gst.PadProbeType.QUERY_UPSTREAM, _answer_not_seekable)
            if freezer is not None:
                freezer.watch(pay.get_static_pad("sink"))
            index += 1
        media.setup_looping(self.name)
        log.info("/%s: new media", self.name)


@dataclass(frozen=True)
class Mount:
    """One ``--mount NAME=PATH``: the file at PATH is served at rtsp://HOST:PORT/NAME."""

    name: str
    path: Path


def parse_mount(text: str) -> Mount:
    name, sep, path = text.partition("=")
    name = name.strip("/")
    if not sep or not name or not path or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return Mount(name, Path(path))


def base_url(host: str, port: int) -> str:
    return f"rtsp://[{host}]:{port}" if ":" in host else f"rtsp://{host}:{port}"


def build_server(
    host: str,
    port: int,
    mounts: list[Mount],
    *,
    shared: bool,
    corrupt: frozenset[str] = frozenset(),
    freeze_after_s: float | None = None,
) -> GstRtspServer.RTSPServer:
    """A server with one factory per mount; raises ``SimulatorError`` for a file it cannot serve.

    Fault modes: the mounts named in ``corrupt`` send corrupted payloads; with ``freeze_after_s`` every media
    stops sending data after that many seconds of playing (each new client gets a fresh media that plays
    again, unless ``shared``)."""
    server = GstRtspServer.RTSPServer()
    server.set_address(host)
    server.set_service(str(port))
    points = server.get_mount_points()
    for mount in mounts:
        layout = probe_media(mount.path)
        log.info(
            "/%s: %s, %s, video=%s audio=%s, %.3f s",
            mount.name,
            mount.path,
            layout.demuxer,
            layout.video,
            layout.audio,
            layout.duration_s,
        )
        factory = FileCameraFactory(
            mount.name, layout, shared=shared, corrupt=mount.name in corrupt, freeze_after_s=freeze_after_s
        )
        points.add_factory(f"/{mount.name}", factory)
    return server


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on; 0 picks a free one")
    parser.add_argument(
        "--mount",
        type=parse_mount,
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="serve PATH at rtsp://HOST:PORT/NAME (repeatable)",
    )
    parser.add_argument(
        "--shared",
        action="store_true",
        help="one live media per mount for all clients (default: each client starts at the file's start)",
    )
    parser.add_argument(
        "--corrupt",
        action="append",
        default=[],
        metavar="NAME",
        help="fault: mount NAME sends corrupted RTP payloads (repeatable)",
    )
    parser.add_argument(
        "--freeze-after",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="fault: every media stops sending data after SECONDS of playing, the connection kept open",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    names = [m.name for m in args.mount]
    if len(set(names)) != len(names):
        parser.error(f"duplicate mount names: {names}")
    unknown = sorted(set(args.corrupt) - set(names))
    if unknown:
        parser.error(f"--corrupt names no mount: {unknown}")
    return args


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        server = build_server(
            args.host,
            args.port,
            args.mount,
            shared=args.shared,
            corrupt=frozenset(args.corrupt),
            freeze_after_s=args.freeze_after,
        )
    except SimulatorError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    # attach() returns 0 instead of raising when it cannot bind (e.g. port taken): a test would otherwise
    # silently talk to an older server on that port.
    source_id = server.attach(None)
    if source_id == 0:
        log.error("cannot listen on %s:%d (port in use?)", args.host, args.port)
        return EXIT_USAGE
    loop = GLib.MainLoop()

    def stop(signame: str) -> bool:
        log.info("%s: stopping", signame)
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, stop, "SIGTERM")
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, stop, "SIGINT")
    url = base_url(args.host, server.get_bound_port())
    log.info(
        "serving %s (%s)",
        ", ".join(f"{url}/{m.name}" for m in args.mount),
        "shared media" if args.shared else "one media per client",
    )
    print(f"READY {url}", flush=True)  # noqa: T201 - the one line of CLI output, read by the test fixture
    loop.run()
    GLib.source_remove(source_id)
    # Close the connections ourselves, so clients see the camera go away at once rather than at exit.
    server.client_filter(lambda _server, _client: GstRtspServer.RTSPFilterResult.REMOVE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
