"""The daemon's configuration: pydantic models with ``extra="forbid"``, loaded from YAML.

An invalid file fails at start with every problem listed by YAML path and line (``ConfigError``), before anything
starts. Relative paths in the file (model package, replayed clips) are resolved against the file's folder, so a
config works from any working directory; the outbox and media paths are relative to the working directory, where
``alerts tail`` looks for the outbox by default (the media directory sits beside it: ``.lepton/media``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    Field,
    FilePath,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from alerts.outbox import DEFAULT_MAX_DELIVERED_ROWS, DEFAULT_OUTBOX_PATH, DEFAULT_RETENTION_S
from alerts.publisher import KafkaSettings
from edge.errors import ConfigError
from pipeline.aggregator import AggregatorSettings
from pipeline.engines.base import EngineConfig, OrtEngineConfig
from pipeline.media import CameraMedia, ClipSettings, MediaSettings, SnapshotSettings
from pipeline.models.default_package import default_package_dir
from pipeline.pairing import PairedMicrophone, microphone_source_id
from pipeline.redact import redact_url
from pipeline.sources.microphone import MicrophoneSpec
from pipeline.sources.spec import SourceKind, SourceSpec, classify
from pipeline.strict import StrictModel
from pipeline.tamper import TamperSettings


def _port_of(rest: str) -> str | None:
    """The port of a URL's authority as written (``rest``: what follows ``scheme://``), None when it has none. The
    user info runs to the last ``@`` (a password may hold ``/`` or ``#``), as ``pipeline.redact`` reads it."""
    hostport = re.split(r"[/?#]", rest[rest.rfind("@") + 1 :], maxsplit=1)[0]
    if hostport.startswith("["):
        _, _, after = hostport.partition("]")
        return after[1:] if after.startswith(":") else None
    return hostport.rpartition(":")[2] if ":" in hostport else None


class MicrophoneConfig(StrictModel):
    """A local microphone (sounddevice / PortAudio) that gives a video-only camera its audio."""

    device: Annotated[StrictInt, Field(ge=0)] | Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None,
        description="Input device: its index, or its name or a part of it (case-insensitive; an exact name "
        "wins); absent: the system's default input. `edge doctor` lists the input devices",
    )
    samplerate: int | None = Field(
        None,
        ge=8000,
        le=192000,
        description="Capture rate asked of the device "
        "(Hz); absent: the device's default. Windows are resampled to the model's rate",
    )
    channels: int = Field(1, ge=1, le=32, description="Channels to capture; more than one are averaged to mono")
    blocksize: int | None = Field(None, ge=16, le=65536, description="Frames per capture block; absent: 20 ms")
    latency: Annotated[float, Field(gt=0, le=2)] | Literal["low", "high"] = Field(
        "high", description="PortAudio input latency: seconds, or the device's 'low' / 'high' default"
    )
    read_timeout_s: float = Field(
        5.0,
        gt=0,
        le=120,
        description="No audio for this long means the microphone is lost: it is reopened with the camera's back-off",
    )
    offset_s: float = Field(
        0.0,
        ge=-10,
        le=10,
        description="Seconds added to each window's place on the camera's "
        "time line (positive: later); the camera's latency, if known",
    )


class CameraConfig(StrictModel):
    id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9_.:-]+$",
            description="Camera id: Kafka key and label of every event",
        ),
    ]
    url: str = Field(
        min_length=1,
        description="rtsp://user:pass@host/path, a media file, an image pattern "
        "such as frames/%03d.jpg, or a folder of frames",
    )
    detect_url: str | None = Field(
        None,
        min_length=1,
        description="The camera's low-resolution substream (rtsp://, e.g. 640x360), decoded and "
        "scored instead of url; url (the main stream) is then only demuxed into the buffer that snapshots and clips "
        "are made of, at its own resolution, and not opened at all when the camera keeps neither. Its own source "
        "(`<id>/main`): its loss leaves events without media, not without detection",
    )
    fps: float | None = Field(None, gt=0, le=240, description="Frame rate of an image sequence")
    replay: Literal["fast", "realtime"] = Field(
        "realtime", description="Files only: replay at real-time pace or as fast as possible"
    )
    video: bool = Field(True, description="Score this camera's video")
    audio: bool = Field(True, description="Score this camera's audio")
    open_timeout_s: float = Field(5.0, gt=0, le=120, description="Bound on connecting to the camera")
    read_timeout_s: float = Field(5.0, gt=0, le=120, description="Bound on waiting for data from the camera")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTP over the RTSP TCP connection, or UDP")
    skip_loop_filter: Literal["nokey", "none"] = Field(
        "nokey",
        description="H.264/H.265 deblocking on key frames only (nokey: ~17 % less decoding CPU, the "
        "model's input changes by ~0.3/255) or on every frame (none)",
    )
    stall_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Live cameras: no frame for this long means stalled, and the camera is reconnected (the watchdog)",
    )
    backoff_initial_s: float = Field(
        0.5,
        gt=0,
        le=60,
        description="Live cameras: first wait before reconnecting; doubles with each failed attempt, with jitter",
    )
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="Live cameras: longest wait between attempts")
    offline_after_s: float | None = Field(
        30.0,
        gt=0,
        le=86400,
        description="Live cameras: not streaming for this long sends a camera offline alert "
        "(type offline, through the outbox like events), and streaming again an online one; null: no alerts",
    )
    snapshots: SnapshotSettings = Field(
        default_factory=SnapshotSettings,
        description="A JPEG at each event's peak with its worst region drawn; off by default",
    )
    clips: ClipSettings = Field(
        default_factory=ClipSettings,
        description="A stream-copied clip of each event with pre- and post-roll; off by default",
    )
    microphone: MicrophoneConfig | None = Field(
        None,
        description="A local microphone that gives this RTSP camera its audio (the camera's own audio track "
        "is then not used)",
    )
    mask: list[tuple[float, float, float, float]] = Field(
        default_factory=list,
        max_length=64,
        description="Regions never scored, each [x0, y0, x1, y1] in fractions of the picture (0,0 top left): a clock "
        "overlay, a tree in the wind, a road beyond the fence. A video patch or temporal cell whose centre lies in "
        "one counts for nothing, and motion there does not wake the video model (the motion gate leaves it out)",
    )
    isolation: Literal["thread", "process"] = Field(
        "thread",
        description="Where this camera is decoded: a thread of the daemon (least memory), or a child process "
        "of its own, so that a segfault or a hang inside FFmpeg restarts this camera after back-off instead of "
        "killing or blocking the daemon (with a detect_url, each of its two streams in a process of its own). "
        "Process: snapshots and clips add pipe traffic of ~the stream's bit rate",
    )

    @field_validator("url", "detect_url")
    @classmethod
    def _readable_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", url)
        if scheme and scheme.group(1).lower() not in ("rtsp", "rtsps"):
            # read as a file path it would fail as "no such file" with its password in the message
            raise ValueError(
                f"{redact_url(url)}: cameras are read over rtsp:// or rtsps:// (or from a file or image "
                f"sequence); {scheme.group(1)}:// is not supported"
            )
        if scheme:
            port = _port_of(url[scheme.end() :])
            if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"{redact_url(url)}: port {port[:12]!r} is not a number in 1-65535")
        return url

    @field_validator("mask")
    @classmethod
    def _regions(cls, regions: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
        for i, (x0, y0, x1, y1) in enumerate(regions):
            if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
                raise ValueError(
                    f"region {i} [{x0}, {y0}, {x1}, {y1}] must have 0 <= x0 < x1 <= 1 and "
                    "0 <= y0 < y1 <= 1 (fractions of the picture, top left first)"
                )
        return regions

    @model_validator(mode="after")
    def _backoff_bounds(self) -> CameraConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self

    @field_validator("detect_url")
    @classmethod
    def _detect_stream_beside_a_live_main(cls, detect_url: str | None, info: ValidationInfo) -> str | None:
        url = info.data.get("url")  # absent when url itself was invalid (reported on its own line)
        if detect_url is None or url is None:
            return detect_url
        if classify(url) is not SourceKind.RTSP or classify(detect_url) is not SourceKind.RTSP:
            raise ValueError("a substream and its main stream (url) are both rtsp:// or rtsps:// URLs of one camera")
        if detect_url == url:
            raise ValueError("the same URL as url; give the camera's substream, or leave detect_url out")
        return detect_url

    @model_validator(mode="after")
    def _microphone_pairs_with_live_video(self) -> CameraConfig:
        if self.microphone is None:
            return self
        if self.kind is not SourceKind.RTSP:
            raise ValueError(
                "microphone: only a live RTSP camera can be paired with a microphone (a replayed "
                "file has no present moment to pair it at)"
            )
        if not self.video:
            raise ValueError("microphone: the camera's video must be scored (video: true) to pair a microphone")
        if self.audio and "audio" in self.model_fields_set:
            raise ValueError(
                "microphone: the microphone gives this camera its audio; drop audio: true (the "
                "camera's own audio track is not used when a microphone is paired)"
            )
        return self

    @property
    def kind(self) -> SourceKind:
        return classify(self.url)


class DetectConfig(StrictModel):
    max_batch: int = Field(8, ge=1, le=256, description="Most frames scored in one batch across cameras")
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="How long a batch with room waits for more frames "
        "before it is scored: 0 on CPUs (no gain per frame), a few ms on GPUs",
    )


class OutboxConfig(StrictModel):
    path: Path = Field(
        DEFAULT_OUTBOX_PATH,
        description="SQLite outbox; without Kafka it is the event bus. It is "
        "also the event store: delivered events stay queryable (console, alerts tail --since) for the "
        "retention below, with their timelines and verdicts",
    )
    retention_h: float = Field(
        DEFAULT_RETENTION_S / 3600,
        gt=0,
        le=24 * 3650,
        description="Delivered event messages older than this are deleted (pending ones never are)",
    )
    max_messages: int = Field(
        DEFAULT_MAX_DELIVERED_ROWS,
        ge=100,
        le=100_000_000,
        description="Most delivered event messages kept; the oldest go first",
    )


class HealthConfig(StrictModel):
    host: str = Field(
        "127.0.0.1",
        description="Address of /healthz, /metrics and the console (localhost: not on the "
        "network). Any other address is warned about at start unless token_file is set, and the "
        "console is only served there with token_file",
    )
    port: int = Field(
        9108, ge=0, le=65535, description="Port of the health and Prometheus metrics endpoint and of the console"
    )
    console: bool = Field(
        True,
        description="Serve the operator's console (review, live cameras, its JSON API) beside /healthz and /metrics",
    )
    token_file: FilePath | None = Field(
        None,
        description="File holding a bearer token: every request must then "
        "carry 'Authorization: Bearer <token>' (401 otherwise). Meant for a "
        "non-loopback host; a scraper sets it (Prometheus: authorization.credentials)",
    )


class EdgeConfig(StrictModel):
    site: str = Field("default", min_length=1, max_length=128, description="Site label carried by every event")
    model: Path = Field(
        default_factory=default_package_dir,
        description="Model package directory (model.json + "
        "ONNX graphs), relative to this file; absent: the default package bundled with lepton-edge",
    )
    engine: EngineConfig = Field(default_factory=OrtEngineConfig, description="Inference backend, by type")
    detect: DetectConfig = Field(default_factory=DetectConfig)
    events: AggregatorSettings = Field(default_factory=AggregatorSettings, description="Event decisions")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    kafka: KafkaSettings | None = Field(None, description="Kafka delivery; absent: the outbox is the bus")
    tampering: TamperSettings = Field(default_factory=TamperSettings, description="Camera tampering checks")
    health: HealthConfig | None = Field(
        None, description="Health, Prometheus metrics and the console over HTTP; absent: off"
    )
    media: MediaSettings = Field(
        default_factory=MediaSettings, description="Directory and retention of the cameras' snapshots and clips"
    )
    cameras: list[CameraConfig] = Field(min_length=1, description="The cameras (or replayed files)")

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cams: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for cam in cams:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} is used twice")
            seen.add(cam.id)
        return cams

    @model_validator(mode="after")
    def _image_sequences_need_fps(self) -> EdgeConfig:
        for cam in self.cameras:
            if cam.kind is SourceKind.IMAGES and cam.fps is None:
                raise ValueError(f"camera {cam.id!r}: an image sequence needs fps")
        return self

    def camera_media(self) -> dict[str, CameraMedia]:
        """What each camera keeps of its events (only the cameras that keep something)."""
        return {c.id: CameraMedia(c.snapshots, c.clips) for c in self.cameras if c.snapshots.enabled or c.clips.enabled}

    def offline_alerts(self) -> dict[str, float]:
        """Each live camera's ``offline_after_s`` (cameras with alerts only)."""
        return {
            c.id: c.offline_after_s for c in self.cameras if c.kind is SourceKind.RTSP and c.offline_after_s is not None
        }

    def source_specs(self) -> list[SourceSpec]:
        return [
            SourceSpec(
                camera_id=c.id,
                url=c.detect_url or c.url,
                main_url=c.url if c.detect_url else None,
                input_fps=c.fps,
                pace=c.replay == "realtime",
                open_timeout_s=c.open_timeout_s,
                read_timeout_s=c.read_timeout_s,
                rtsp_transport=c.rtsp_transport,
                skip_loop_filter=c.skip_loop_filter,
                video=c.video,
                audio=c.audio and c.microphone is None,
                stall_timeout_s=c.stall_timeout_s,
                backoff_initial_s=c.backoff_initial_s,
                backoff_max_s=c.backoff_max_s,
                isolation=c.isolation,
                mask=tuple(c.mask),
            )
            for c in self.cameras
        ]

    def microphones(self) -> list[PairedMicrophone]:
        """The cameras' paired microphones (``pipeline.pairing``); each is a source of its own, ``cam/mic``."""
        out = []
        for c in self.cameras:
            m = c.microphone
            if m is None:
                continue
            spec = MicrophoneSpec(
                camera_id=microphone_source_id(c.id),
                device=m.device,
                capture_rate=m.samplerate,
                channels=m.channels,
                blocksize=m.blocksize,
                latency=m.latency,
                read_timeout_s=m.read_timeout_s,
                backoff_initial_s=c.backoff_initial_s,
                backoff_max_s=c.backoff_max_s,
            )
            out.append(PairedMicrophone(c.id, spec, m.offset_s))
        return out


def _line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map each YAML path (keys and list indexes) to its 1-based line."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            lines[sub] = key.start_mark.line + 1
            for p, ln in _line_index(value, sub).items():
                lines.setdefault(p, ln)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_index(item, (*path, i)))
    return lines


def _where(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> str:
    # pydantic may append the union member tried; walk back to the deepest path the YAML has
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return f"line {lines[loc[:n]]}"
    return "line ?"


MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 100_000
"""A config names a few dozen cameras: past these, a file is a mistake or an attack (a YAML alias bomb of 389
bytes expands to millions of nodes), refused before anything walks it."""


def load_config(path: str | Path) -> EdgeConfig:
    """Load and validate a config file; raise :class:`ConfigError` listing every problem."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(str(p), ["no such file"]) from None
    except OSError as exc:
        raise ConfigError(str(p), [exc.strerror or str(exc)]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(str(p), [f"larger than {MAX_CONFIG_BYTES >> 20} MiB: not a config file"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            str(p), [f"line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"]
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_expansion(node)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(str(p), [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    except _TooLarge as exc:
        raise ConfigError(str(p), [str(exc)]) from None
    except RecursionError:
        raise ConfigError(str(p), ["nested too deeply to be a config"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(p), ["line 1: the file must be a mapping (site:, model:, cameras: ...)"])
    lines = _line_index(node) if node is not None else {}
    try:
        cfg = EdgeConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            dotted = ".".join(str(x) for x in loc) or "(top)"
            problems.append(f"{_where(loc, lines)}: {dotted}: {err['msg']}")
        raise ConfigError(str(p), problems) from None
    return _resolve_paths(cfg, p.parent, data)


class _TooLarge(ValueError):
    pass


def _check_expansion(root: yaml.Node | None) -> None:
    """Raise a YAML error when the document, with its aliases expanded, has more than ``MAX_CONFIG_NODES`` nodes.

    Aliases share their node, so the composed graph is small; what is counted is what a walk of it would visit
    (memoised per node, so the count itself costs the graph's size, not the expansion's)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a recursive alias counts once instead of forever
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in node.value)
        else:
            total = 1
        if total > MAX_CONFIG_NODES:
            raise _TooLarge(
                f"line {node.start_mark.line + 1}: with its aliases expanded this document has over "
                f"{MAX_CONFIG_NODES} values: not a config (a YAML alias bomb?)"
            )
        sizes[id(node)] = total
        return total

    if root is not None:
        size(root)


def _resolve_paths(cfg: EdgeConfig, base: Path, data: dict[str, Any]) -> EdgeConfig:
    model = cfg.model if cfg.model.is_absolute() or "model" not in data else (base / cfg.model).resolve()
    cams = []
    for cam in cfg.cameras:
        if cam.kind is SourceKind.RTSP or Path(cam.url).is_absolute():
            cams.append(cam)
        else:
            cams.append(cam.model_copy(update={"url": str((base / cam.url).resolve())}))
    return cfg.model_copy(update={"model": model, "cameras": cams})
