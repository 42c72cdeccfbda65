"""Corrupted media for the fuzz suite: deterministic (a seed), made from the bundled samples.

``base_clips(folder)`` remuxes the first 2 s of two sample clips into Matroska and MP4 (stream copy: the samples'
own H.264 and AAC). ``corruptions(bases, n, seed)`` yields ``n`` (name, kind, bytes) made from them, the kinds in
turn: truncations at random offsets, bit flips, zeroed ranges, swapped headers (one file's head on another's
body), wrong extensions, zero-length files, huge declared sizes (a Matroska element's or an MP4 box's size field
set near its maximum), and random bytes after a real header. ``read_outcome(path)`` reads one file through the
reader the daemon and ``edge score`` use and says how it ended: ``clean``, or the kind of the one ``SourceError``.

    PYTHONPATH=.:tests python tests/support/corrupt_media.py [N] [SEED]   # counts by kind and outcome
"""

from __future__ import annotations

import random
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
KINDS = (
    "truncate",
    "bitflip",
    "zero-range",
    "swap-header",
    "wrong-extension",
    "zero-length",
    "huge-size",
    "random-tail",
)
_MKV_IDS = (b"\x18\x53\x80\x67", b"\x1f\x43\xb6\x75", b"\x16\x54\xae\x6b", b"\x1a\x45\xdf\xa3")  # Segment, Cluster,
# Tracks, EBML header
_MP4_BOXES = (b"moov", b"trak", b"mdat", b"stsz", b"stco", b"mdhd", b"avcC")


def base_clips(folder: Path, seconds: float = 2.0) -> list[Path]:
    import av

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for sample in ("test_1.mkv", "tamper_moved.mkv"):
        for fmt, ext in (("matroska", "mkv"), ("mp4", "mp4")):
            dst = folder / f"{Path(sample).stem}.{ext}"
            with av.open(str(SAMPLES / sample)) as src, av.open(str(dst), "w", format=fmt) as sink:
                streams = {
                    s.index: sink.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")
                }
                for packet in src.demux():
                    if packet.dts is None or packet.stream.index not in streams:
                        continue
                    if packet.pts is not None and packet.pts * packet.time_base > seconds:
                        break
                    packet.stream = streams[packet.stream.index]
                    sink.mux(packet)
            out.append(dst)
    return out


def corruptions(bases: list[Path], n: int, seed: int = 21) -> Iterator[tuple[str, str, bytes]]:
    rng = random.Random(seed)
    data = {p: p.read_bytes() for p in bases}
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        base = bases[rng.randrange(len(bases))]
        raw = bytearray(data[base])
        ext = base.suffix
        if kind == "truncate":
            raw = raw[: rng.randrange(0, len(raw))]
        elif kind == "bitflip":
            for _ in range(rng.choice((1, 2, 8, 64))):
                pos = rng.randrange(len(raw))
                raw[pos] ^= 1 << rng.randrange(8)
        elif kind == "zero-range":
            start = rng.randrange(len(raw))
            raw[start : start + rng.choice((4, 64, 1024, 8192))] = bytes(min(8192, len(raw) - start))[
                : len(raw[start : start + 8192])
            ]
        elif kind == "swap-header":
            other = data[bases[rng.randrange(len(bases))]]
            cut = rng.randrange(16, 4096)
            raw = bytearray(other[:cut] + raw[cut:])
        elif kind == "wrong-extension":
            ext = rng.choice((".mp4", ".mkv", ".wav", ".jpg", ".txt", ".ts", ".avi"))
            if ext == base.suffix:
                ext = ".wav"
        elif kind == "zero-length":
            raw = bytearray()
            ext = rng.choice((".mkv", ".mp4", ".wav"))
        elif kind == "huge-size":
            raw = _huge_size(raw, base.suffix, rng)
        elif kind == "random-tail":
            cut = rng.randrange(64, 2048)
            raw = raw[:cut] + bytearray(rng.randbytes(len(raw) - cut))
        yield f"{i:05d}-{kind}{ext}", kind, bytes(raw)


def _huge_size(raw: bytearray, ext: str, rng: random.Random) -> bytearray:
    if ext == ".mkv":
        spots = [m.end() for tag in _MKV_IDS for m in re.finditer(re.escape(tag), raw)]
        if spots:
            at = rng.choice(spots)
            width = _vint_width(raw[at])
            # the largest size of that width that is not "unknown" (all ones)
            raw[at : at + width] = bytes(
                [(0x80 >> (width - 1)) | ((0xFF >> width) & 0xFF)] + [0xFF] * (width - 2) + [0xFE]
                if width > 1
                else [0xFE]
            )
        return raw
    spots = [m.start() - 4 for tag in _MP4_BOXES for m in re.finditer(re.escape(tag), raw) if m.start() >= 4]
    if spots:
        at = rng.choice(spots)
        raw[at : at + 4] = rng.choice(
            (b"\xff\xff\xff\xf0", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x01", b"\x00\x00\x00\x00")
        )
    return raw


def _vint_width(first: int) -> int:
    for width in range(1, 9):
        if first & (0x80 >> (width - 1)):
            return width
    return 8


_DETAIL = re.compile(r": ([a-z][a-zA-Z -]*?)(?: \(|:|$)")


def read_outcome(path: Path) -> str:
    """``clean`` when the reader ends without error, else the kind of its ``SourceError`` (its first words).
    Anything else (another exception) propagates: that is what the fuzz suite exists to catch."""
    from pipeline.errors import SourceError
    from pipeline.sources.reader import read_media

    try:
        for _ in read_media(str(path), width=64, height=36, fps=5):
            pass
    except SourceError as exc:
        text = str(exc)
        assert "\n" not in text and "Traceback" not in text and text.startswith(str(path)), text
        m = _DETAIL.search(text[len(str(path)) :])
        return m.group(1).strip() if m else "other error"
    return "clean"


def main(argv: list[str]) -> int:
    import tempfile

    n = int(argv[1]) if len(argv) > 1 else 1200
    seed = int(argv[2]) if len(argv) > 2 else 21
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bases = base_clips(folder / "base")
        outcomes: Counter[tuple[str, str]] = Counter()
        for name, kind, data in corruptions(bases, n, seed):
            path = folder / name
            path.write_bytes(data)
            outcomes[kind, read_outcome(path)] += 1
            path.unlink()
    for (kind, outcome), count in sorted(outcomes.items()):
        print(f"{kind:<16} {outcome:<40} {count}")  # noqa: T201 - a script's report
    by_outcome: Counter[str] = Counter()
    for (_, outcome), count in outcomes.items():
        by_outcome[outcome] += count
    print(dict(by_outcome.most_common()))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
