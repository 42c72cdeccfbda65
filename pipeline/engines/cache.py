"""The compiled-engine cache: where an engine built from a graph is kept, under which key, and how it is written.

An engine compiled by TensorRT is only valid for the exact graph, TensorRT version, GPU model and compute
capability, precision and optimisation profile it was built for; loading one built under any other is at best
refused and at worst wrong. So the key is a digest of all of them, and the file name repeats the readable parts:

    <cache_dir>/<graph>-<sha256[:12]>-<precision>-b<max_batch>-<digest[:16]>.engine   the serialized engine
    <cache_dir>/<same>.json                                                            the key fields, for people

Files are written atomically (a temporary file in the same folder, fsync, ``os.replace``): a daemon killed in the
middle of a build, or two daemons building the same engine, never leave a truncated engine under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

# (min, opt, max) shape of each input
Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lepton-edge" / "tensorrt"


def batch_profile(shapes: dict[str, tuple[int, ...]], max_batch: int) -> Profile:
    """Profile for batch 1..max_batch (optimised for max_batch: the runner fills batches across cameras) with
    the other dimensions fixed as in ``shapes`` (one sample's shape per input, batch dimension included)."""
    return {name: ((1, *shape[1:]), (max_batch, *shape[1:]), (max_batch, *shape[1:])) for name, shape in shapes.items()}


@dataclass(frozen=True)
class CacheKey:
    """Everything a compiled engine depends on."""

    graph: str  # graph file stem, for the file name only
    model_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: Profile = field(hash=False)

    @property
    def max_batch(self) -> int:
        return max(mx[0] for _, _, mx in self.profile.values())

    def digest(self) -> str:
        fields = asdict(self)
        fields.pop("graph")
        fields["profile"] = {k: [list(s) for s in v] for k, v in sorted(self.profile.items())}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def file_stem(self) -> str:
        graph = re.sub(r"[^A-Za-z0-9_.-]", "_", self.graph)
        return f"{graph}-{self.model_sha256[:12]}-{self.precision}-b{self.max_batch}-{self.digest()[:16]}"

    def to_json(self) -> str:
        data = asdict(self)
        data["profile"] = {k: [list(s) for s in v] for k, v in self.profile.items()}
        data["digest"] = self.digest()
        return json.dumps(data, indent=1, sort_keys=True)


class EngineCache:
    """A folder of compiled engines, keyed by :class:`CacheKey`."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def path(self, key: CacheKey) -> Path:
        return self.directory / f"{key.file_stem()}.engine"

    def get(self, key: CacheKey) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: CacheKey, data: bytes) -> Path:
        path = self.path(key)
        atomic_write_bytes(path, data)
        atomic_write_bytes(path.with_suffix(".json"), key.to_json().encode())
        return path

    def discard(self, key: CacheKey) -> None:
        """Remove an entry that turned out unusable (corrupt, or refused by the runtime)."""
        for p in (self.path(key), self.path(key).with_suffix(".json")):
            p.unlink(missing_ok=True)

    def timing_cache_path(self, tensorrt_version: str, gpu_name: str, compute_capability: str) -> Path:
        """One timing cache per TensorRT version and GPU model: kernel timings carry over between graphs."""
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{tensorrt_version}-{gpu_name}-sm{compute_capability}")
        return self.directory / f"timing-{slug}.cache"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    except OSError:
        pass
    finally:
        os.close(dir_fd)
