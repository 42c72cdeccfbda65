"""What a source is: a camera URL, a file to replay, or an image sequence; and how to open it."""

from __future__ import annotations

import glob
import itertools
import os
import re
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path

from pipeline.errors import SourceFormatError
from pipeline.redact import redact_url


class SourceKind(str, Enum):
    RTSP = "rtsp"  # a live network camera
    FILE = "file"  # a media file replayed
    IMAGES = "images"  # an image sequence such as frames/%03d.jpg, or a folder of frames


_PRINTF = re.compile(r"%0?\d*d")
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def classify(url: str) -> SourceKind:
    lowered = url.lower()
    if lowered.startswith(("rtsp://", "rtsps://")):
        return SourceKind.RTSP
    if _PRINTF.search(url) or os.path.isdir(url):
        return SourceKind.IMAGES
    return SourceKind.FILE


# FFmpeg's skip_loop_filter values a source may use: deblock every frame, or key frames only.
SKIP_LOOP_FILTER = ("none", "nokey")
# Where a source is decoded: a thread of the daemon, or a child process of its own (``pipeline.sources.isolated``).
ISOLATION = ("thread", "process")


# A rectangle (x0, y0, x1, y1) in fractions of the frame. A camera's ``mask`` is a tuple of them: regions never
# scored (a clock overlay, a tree in the wind, a road beyond the fence).
Region = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """How to open one source. Timeouts bound every network wait.

    Live cameras only: ``stall_timeout_s`` without a decoded frame ends a session as stalled (the watchdog);
    a lost camera is retried after an exponential back-off from ``backoff_initial_s`` up to ``backoff_max_s``,
    with jitter (see ``pipeline.sources.capture``).
    """

    camera_id: str
    url: str
    input_fps: float | None = None  # image sequences only: the rate the frames were taken at
    pace: bool = False  # replay files at real-time speed instead of as fast as possible
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    rtsp_transport: str = "tcp"
    # H.264/H.265 deblocking skipped on non-key frames ("nokey", FFmpeg's skip_loop_filter) or never ("none"):
    # a good share of decoding CPU saved for a model input that barely changes (docs/measurements.md)
    skip_loop_filter: str = "nokey"
    video: bool = True  # decode and score this source's video
    audio: bool = True  # decode and score this source's audio
    stall_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    isolation: str = "thread"  # "process": decoded in a child process that a crash in FFmpeg cannot escape
    # video patches and temporal cells whose centre lies in one of these regions count for nothing
    mask: tuple[Region, ...] = ()
    # The camera's main (full-resolution) stream when ``url`` is its detect substream: only demuxed, into the packet
    # ring of its snapshots and clips (``pipeline.sources.main_stream``), never decoded for scoring.
    main_url: str | None = None

    def __repr__(self) -> str:
        # the generated repr would print the URLs' credentials wherever a spec is logged
        def shown(name: str) -> str:
            value = getattr(self, name)
            return repr(redact_url(value)) if name in ("url", "main_url") and value is not None else repr(value)

        return f"SourceSpec({', '.join(f'{f.name}={shown(f.name)}' for f in fields(self))})"

    def __post_init__(self) -> None:
        for name in ("open_timeout_s", "read_timeout_s", "stall_timeout_s", "backoff_initial_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        if self.skip_loop_filter not in SKIP_LOOP_FILTER:
            raise ValueError(f"skip_loop_filter must be one of {', '.join(SKIP_LOOP_FILTER)}")
        if self.isolation not in ISOLATION:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATION)}")

    @property
    def kind(self) -> SourceKind:
        return classify(self.url)

    @property
    def live(self) -> bool:
        return self.kind is SourceKind.RTSP

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    @property
    def read_s(self) -> float:
        """Longest wait for data from a live source: a frozen camera ends the read within the stall timeout too."""
        return min(self.read_timeout_s, self.stall_timeout_s)

    def rtsp_options(self) -> dict[str, str]:
        """FFmpeg's options for opening this source over RTSP (``av.open(url, options=..., timeout=(open, read))``)."""
        return {
            "rtsp_transport": self.rtsp_transport,
            # socket I/O timeout in microseconds: a camera that stops sending ends the read
            "timeout": str(int(self.read_s * 1_000_000)),
            # probing the default 5 s of stream costs ~1.9 s per (re)connect; this is enough for H.264/H.265 + one
            # audio stream (FACTS.md)
            "analyzeduration": "500000",
            "probesize": "500000",
        }


@dataclass(frozen=True)
class ImageSequence:
    """How FFmpeg's image2 demuxer reads an image sequence, and the frames it will read, in order."""

    pattern: str
    files: tuple[str, ...]
    glob: bool = False  # pattern is a glob (name order); else a printf pattern read from start_number
    start_number: int | None = None


_NUMBERED = re.compile(r"(.*?)(\d+)(\.[^.]+)")

# Files a folder of recordings holds (``expand_folders``); anything else in it (notes, labels) is passed over.
_MEDIA_EXT = (
    ".mkv",
    ".mp4",
    ".m4v",
    ".mov",
    ".avi",
    ".webm",
    ".ts",
    ".flv",
    ".mpg",
    ".mpeg",
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".mp3",
    ".m4a",
    ".aac",
)


def _entries(folder: Path) -> list[Path]:
    """What ``folder`` holds, in name order, hidden entries left out (``.name``: macOS's ``._001.tif`` companions in
    archives, ``.DS_Store``, editors' files are neither frames nor recordings)."""
    return sorted((e for e in folder.iterdir() if not e.name.startswith(".")), key=lambda e: e.name)


def _image_names(folder: Path) -> list[str]:
    """The image files directly in ``folder``, in name order."""
    return [e.name for e in _entries(folder) if e.name.lower().endswith(_IMAGE_EXT) and e.is_file()]


def expand_folders(paths: list[str]) -> list[str]:
    """Inputs as ``edge train`` takes them: a folder of frames is one input; a folder without frames of its own
    holding recordings and/or folders of frames (how data sets come: ``training_videos/*.avi``,
    ``Train/Train001/*.tif``) stands for each of them, in name order. Anything else is kept as given."""
    out: list[str] = []
    for url in paths:
        folder = Path(url)
        if not folder.is_dir() or _image_names(folder):
            out.append(url)
            continue
        found = [
            str(e)
            for e in _entries(folder)
            if (e.is_file() and e.name.lower().endswith(_MEDIA_EXT)) or (e.is_dir() and _image_names(e))
        ]
        out.extend(found or [url])  # nothing usable: the reader says why
    return out


def image_sequence(url: str) -> ImageSequence:
    """Resolve a folder of frames or a printf pattern (frames/%05d.jpg) to what image2 opens.

    Frames are read in the order of their numbers: ``img_2.jpg`` before ``img_10.jpg``. A printf pattern is
    used where the numbers run without a gap (image2 stops at the first missing number); zero-padded frames
    with gaps are read by name (a glob, the same order); unpadded numbers with gaps cannot be read in order
    by image2 and are refused with a clear error rather than read out of order or cut short. Frames without
    a common numbering are read in name order.
    """
    if os.path.isdir(url):
        folder = Path(url)
        names = _image_names(folder)
        if not names:
            return ImageSequence(str(folder / "%d.jpg"), ())
        matches = [_NUMBERED.fullmatch(n) for n in names]
        if not all(matches) or len({(m[1], m[3]) for m in matches if m}) != 1:
            ext = os.path.splitext(names[0])[1]
            files = tuple(str(folder / n) for n in names if n.endswith(ext))
            return ImageSequence(str(Path(glob.escape(url)) / f"*{ext}"), files, glob=True)
        prefix, ext = matches[0][1], matches[0][3]  # type: ignore[index]
        numbers = {int(m[2]): m[2] for m in matches if m}
    else:
        folder = Path(os.path.dirname(url) or ".")
        base = os.path.basename(url)
        spec = _PRINTF.search(base)
        if spec is None:
            return ImageSequence(url, (url,) if os.path.isfile(url) else ())
        prefix, ext = base[: spec.start()].replace("%%", "%"), base[spec.end() :].replace("%%", "%")
        found = [os.path.basename(f) for f in glob.glob(str(folder / (glob.escape(prefix) + "*" + glob.escape(ext))))]
        numbers = {}
        for name in found:
            m = re.fullmatch(re.escape(prefix) + r"(\d+)" + re.escape(ext), name)
            if m is not None:
                numbers[int(m[1])] = m[1]
    if not numbers:
        return ImageSequence(url, ())
    order = sorted(numbers)
    width = min(len(d) for d in numbers.values())
    files = tuple(str(folder / f"{prefix}{numbers[n]}{ext}") for n in order)
    padded = all(d == f"{n:0{width}d}" for n, d in numbers.items())
    where = f"{folder}: frames {prefix}N{ext}"
    if padded and order == list(range(order[0], order[-1] + 1)):
        pattern = str(folder / f"{prefix.replace('%', '%%')}%0{width}d{ext.replace('%', '%%')}")
        return ImageSequence(pattern, files, start_number=order[0])
    if padded and len({len(d) for d in numbers.values()}) == 1:  # gaps, but name order is number order
        return ImageSequence(
            str(Path(glob.escape(str(folder))) / f"{glob.escape(prefix)}*{glob.escape(ext)}"), files, glob=True
        )
    gap = next(a for a, b in itertools.pairwise(order) if b != a + 1)
    raise SourceFormatError(
        f"{where} are numbered without zero padding and with a gap after {gap}: "
        "image2 cannot read them in order; rename them with zero-padded numbers"
    )
