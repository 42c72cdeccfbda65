"""``benchmarks/real_data.py build`` on a tiny generated data folder: the same bytes twice, the ambient recordings
never on both sides of the split, events mixed where the labels say at the SNR they say, and the clip-level DCASE
figures. The real data is not needed (nor read)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
import wave
from pathlib import Path
from types import ModuleType

import av
import numpy as np
import pytest

from pipeline.evaluation import _frame_labels

ROOT = Path(__file__).resolve().parent.parent
SR = 16000
AMBIENT_HZ = {"air_conditioner": 220.0, "engine_idling": 330.0}  # ambience below SPLIT_HZ, events above
EVENT_HZ = {"car_horn": 3000.0, "siren": 3500.0}
SPLIT_HZ = 1500.0


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("real_data", ROOT / "benchmarks" / "real_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_data"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


rd = _load()


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The module with a scene small enough for the generated data: 8 s / 20 s / 6 s, 4 events."""
    monkeypatch.setattr(rd, "SECONDS", {"train": 8.0, "test": 20.0, "normal": 6.0})
    monkeypatch.setattr(rd, "N_EVENTS", 4)
    return rd


def _write_flac(path: Path, x: np.ndarray) -> None:
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16).reshape(1, -1)
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SR
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _tone(hz: float, seconds: float, amp: float, seed: int) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi)
    return amp * np.sin(2 * np.pi * hz * t + phase)


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _make_data(root: Path) -> Path:
    """A data folder shaped like ../shared/data: a 12-frame mkv in three segments, UrbanSound8K-like slices (tones:
    ambience low, events high, one silent slice), a few bearing clips."""
    root.mkdir()
    # video: 12 frames of 64x48, segments 0-5, 6-9, 10-11
    with av.open(str(root / "avenue_normal.mkv"), "w", format="matroska") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            img = np.full((48, 64, 3), 10 * i, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    _write_csv(
        root / "avenue_normal_segments.csv",
        [
            {
                "segment": k + 1,
                "first_frame": a,
                "last_frame": b,
                "frames": b - a + 1,
                "start_s": a / 25,
                "end_s": (b + 1) / 25,
                "source_first": f"f{a}.jpg",
                "source_last": f"f{b}.jpg",
            }
            for k, (a, b) in enumerate([(0, 5), (6, 9), (10, 11)])
        ],
    )
    # sound: 3 + 2 ambient recordings of 3 slices of 2 s, one silent recording, 2 event classes of 3 slices
    us = root / "urbansound8k_dev"
    us.mkdir()
    rows: list[dict[str, object]] = []
    seed = 0

    def add(name: str, cls: str, x: np.ndarray) -> None:
        _write_flac(us / name, x)
        rows.append(
            {"file": name, "class_id": 0, "class_name": cls, "seconds": f"{len(x) / SR:.4f}", "loop_trimmed": 0}
        )

    for cls, ids in (("air_conditioner", (100, 101, 102)), ("engine_idling", (200, 201))):
        for fs in ids:
            for k in range(3):
                seed += 1
                add(f"{fs}-0-0-{k}.flac", cls, _tone(AMBIENT_HZ[cls], 2.0, 0.05 + 0.01 * k, seed))
    add("999-0-0-0.flac", "engine_idling", _tone(330.0, 2.0, 0.0005, 99))  # -69 dBFS: left out
    for cls, ids in (("car_horn", (300, 301)), ("siren", (400, 401))):
        for fs in ids:
            for k in range(2):
                seed += 1
                pad = np.zeros(round(0.3 * SR))  # trimmed off: 15 frames of 20 ms
                add(
                    f"{fs}-1-0-{k}.flac",
                    cls,
                    np.concatenate([pad, _tone(EVENT_HZ[cls], 0.6 + 0.2 * k, 0.3, seed), pad[: SR // 5]]),
                )
    _write_csv(us / "labels.csv", rows)
    # bearing: 4 train clips (2 normal), 2 val (target), 2 test (source)
    bearing = root / "dcase2023_bearing"
    rows = []
    for split, domain, labels in (
        ("train", "source", ("normal", "anomaly", "normal", "anomaly")),
        ("val", "target", ("normal", "anomaly")),
        ("test", "source", ("normal", "anomaly")),
    ):
        (bearing / split).mkdir(parents=True, exist_ok=True)
        for k, label in enumerate(labels):
            name = f"{split}/section_00_{domain}_test_{label}_{k:04d}_pat_00.flac"
            _write_flac(bearing / name, _tone(1000.0, 0.5, 0.1, k))
            rows.append({"file": name, "split": split, "label": label, "seconds": "0.5000", "domain": domain})
    _write_csv(bearing / "labels.csv", rows)
    return root


def _files(folder: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = str(p.readlink()).encode()
        elif p.is_file():
            out[str(p.relative_to(folder))] = p.read_bytes()
    return out


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SR)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0


def test_two_builds_give_the_same_bytes(small: ModuleType, tmp_path: Path) -> None:
    data = _make_data(tmp_path / "data")
    first = small.build(data, tmp_path / "a", small.SETS)
    small.build(data, tmp_path / "b", small.SETS)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    # speed.mkv, local.mkv: all before their first interval
    assert [f["frames"] for f in first["video"]] == [6, 4, 2, 4, 4]
    for name, frames in (("train", 6), ("unseen", 4), ("drift", 2)):
        with av.open(str(tmp_path / "a" / "avenue" / f"{name}.mkv")) as c:
            decoded = list(c.decode(video=0))
        assert len(decoded) == frames and decoded[0].pts == 0
        truth = json.loads((tmp_path / "a" / "avenue" / f"{name}.json").read_text())
        assert truth["anomalies"] == [] and truth["duration_s"] == pytest.approx(frames / 25)
    for name, seconds in small.SECONDS.items():
        assert len(_read_wav(tmp_path / "a" / "audio_scene" / f"{name}.wav")) == round(seconds * SR)


def _graded_source(path: Path, frames: int) -> list[float]:
    """A lossless clip whose frame i is one flat grey level, rising with i; returns the decoded levels."""
    with av.open(str(path), "w", format="matroska") as out:
        s = out.add_stream("libx264", rate=rd.FPS)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"crf": "0"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 16 + 18 * i, dtype=np.uint8), format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    with av.open(str(path)) as c:
        return [float(f.to_ndarray(format="gray").mean()) for f in c.decode(video=0)]


def test_speed_labels_exactly_the_frames_reached_by_a_fast_step(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``speed.mkv``: inside an interval the playback steps SPEED source frames at a time; a frame is labelled
    when the step that reached it was one of those (what any detector can see), and no other frame is."""
    monkeypatch.setattr(rd, "SPEED_INTERVALS", ((2 / rd.FPS, 4 / rd.FPS),))  # steps out of frames 2 and 3
    levels = _graded_source(tmp_path / "source.mkv", 12)
    made = rd.build_speed(tmp_path / "source.mkv", tmp_path / "speed.mkv")
    with av.open(str(tmp_path / "speed.mkv")) as c:
        shown = [float(f.to_ndarray(format="gray").mean()) for f in c.decode(video=0)]
    source_index = [int(np.argmin([abs(x - lv) for lv in levels])) for x in shown]
    assert made["frames"] == len(shown) and source_index == [0, 1, 2, 5, 8, 9, 10, 11]
    fast = [i > 0 and source_index[i] - source_index[i - 1] > 1 for i in range(len(shown))]
    truth = json.loads((tmp_path / "speed.json").read_text())
    intervals = [(a["start"], a["end"], a["kind"]) for a in truth["anomalies"]]
    labelled = _frame_labels(np.arange(len(shown)) / rd.FPS, intervals)
    assert labelled.tolist() == fast


def test_local_speed_runs_only_its_columns_ahead_within_its_intervals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``local.mkv``: inside an interval the right half shows the frame (SPEED - 1) x (frames into the interval)
    ahead, the left half its own frame; outside, the picture is the source's."""
    monkeypatch.setattr(rd, "LOCAL_INTERVALS", ((2 / rd.FPS, 5 / rd.FPS),))  # frames 2, 3, 4
    source = tmp_path / "source.mkv"
    levels = _graded_source(source, 12)
    made = rd.build_local(source, tmp_path / "local.mkv")
    assert made["frames"] == 12
    with av.open(str(tmp_path / "local.mkv")) as c:
        halves = [
            (float(g[:, :32].mean()), float(g[:, 32:].mean()))
            for g in (f.to_ndarray(format="gray") for f in c.decode(video=0))
        ]
    ahead = {2: 0, 3: 2, 4: 4}  # (SPEED - 1) x frames into the interval
    for i, (left, right) in enumerate(halves):
        assert left == pytest.approx(levels[i], abs=3)
        assert right == pytest.approx(levels[i + ahead.get(i, 0)], abs=3)
    truth = json.loads((tmp_path / "local.json").read_text())
    [label] = truth["anomalies"]
    # frames 3 and 4 (shown ahead) and 5 (the snap back); frame 2 is the source's own, reached at its own pace
    assert (label["start"], label["end"]) == pytest.approx((2.5 / rd.FPS, 5.5 / rd.FPS))


def test_training_and_test_ambience_come_from_different_recordings(small: ModuleType, tmp_path: Path) -> None:
    data = _make_data(tmp_path / "data")
    small.build(data, tmp_path / "out", ["audio"])
    heard = {
        name: json.loads((tmp_path / "out" / "audio_scene" / f"{name}.json").read_text())["recordings"]
        for name in ("train", "test", "normal")
    }
    assert heard["train"] and heard["test"]
    assert not set(heard["train"]) & (set(heard["test"]) | set(heard["normal"]))
    assert "999" not in set().union(*heard.values())  # the silent slice's recording
    for cls in AMBIENT_HZ:  # both classes have >= 2 recordings: each on both sides
        assert cls in {r["class"] for r in heard["train"].values()}
        assert cls in {r["class"] for r in heard["test"].values()}
    assert all(abs(r["gain_db"]) <= small.AUDIO_GAIN_DB["audio"] for h in heard.values() for r in h.values())


def test_levelled_scene_is_the_same_scene_without_the_gains(small: ModuleType, tmp_path: Path) -> None:
    """``audio_level``: the same recordings, slices and events as ``audio``, every recording at gain 0."""
    data = _make_data(tmp_path / "data")
    small.build(data, tmp_path / "out", ["audio", "audio_level"])
    for name in ("train", "test", "normal"):
        varied = json.loads((tmp_path / "out" / "audio_scene" / f"{name}.json").read_text())
        level = json.loads((tmp_path / "out" / "audio_levelled" / f"{name}.json").read_text())
        assert level["recordings"].keys() == varied["recordings"].keys()
        assert {r["gain_db"] for r in level["recordings"].values()} == {0.0}
        assert any(r["gain_db"] != 0 for r in varied["recordings"].values())
        assert [(e["start"], e["end"], e["source"]) for e in level["anomalies"]] == [
            (e["start"], e["end"], e["source"]) for e in varied["anomalies"]
        ]


def test_split_puts_every_class_on_both_sides() -> None:
    slices = [
        rd.Slice(f"{fs}-0-0-{k}.flac", cls, str(fs), np.zeros(SR * (1 + fs % 3)))
        for cls, ids in (("a", (1, 2, 3)), ("b", (4, 5, 6, 7, 8)), ("c", (9, 10)))
        for fs in ids
        for k in range(2)
    ]
    train, test = rd.split_recordings(slices)
    assert not train & test and train | test == {s.fsid for s in slices}
    for cls in ("a", "b", "c"):
        ids = {s.fsid for s in slices if s.cls == cls}
        assert ids & train and ids & test


def test_events_are_where_the_labels_say_at_their_snr(small: ModuleType, tmp_path: Path) -> None:
    data = _make_data(tmp_path / "data")
    made = small.build(data, tmp_path / "out", ["audio"])
    x = _read_wav(tmp_path / "out" / "audio_scene" / "test.wav")
    truth = json.loads((tmp_path / "out" / "audio_scene" / "test.json").read_text())
    events = truth["anomalies"]
    assert len(events) == 4 and truth["duration_s"] == 20.0
    assert sorted(e["kind"].split()[0] for e in events) == ["car_horn", "car_horn", "siren", "siren"]
    starts = [e["start"] for e in events]
    assert starts == sorted(starts) and np.all(np.diff(starts) >= small.ONSET_GAP_S)
    assert all(b["start"] - a["end"] >= small.QUIET_GAP_S for a, b in zip(events, events[1:], strict=False))
    inside = np.zeros(len(x), dtype=bool)
    for e in events:
        a, b = round(e["start"] * SR), round(e["end"] * SR)
        assert b - a in (round(0.6 * SR), round(0.8 * SR))  # the padding trimmed off
        low, high = _bands(x[a:b])
        assert 10 * np.log10(high / low) == pytest.approx(e["snr_db"], abs=0.5)
        assert e["kind"] == f"{e['kind'].split()[0]} {e['snr_db']:.1f} dB" and 0 <= e["snr_db"] <= 10
        inside[max(0, a - SR // 50) : b + SR // 50] = True
    low, high = _bands(x[~inside])
    assert high < 1e-4 * low  # no event sound outside the labels
    assert 0.5 <= made["audio"]["window_rms_auc"] <= 1.0


def _bands(x: np.ndarray) -> tuple[float, float]:
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(power[f < SPLIT_HZ].sum()), float(power[f >= SPLIT_HZ].sum())


def test_mixed_snr_is_event_rms_against_the_ambience_under_it() -> None:
    rng = np.random.default_rng(0)
    bed = rng.normal(0, 0.05, 30 * SR) * np.repeat(rng.uniform(0.2, 2.0, 30), SR)  # a level that changes
    events = [rd.Slice(f"e{k}", "x", str(k), rd.trim_event(rng.normal(0, 0.2, SR))) for k in range(6)]
    mix, placed = rd.mix_events(bed, events, np.random.default_rng(1))
    for p in placed:
        span = slice(p.start, p.start + p.length)
        assert rd.dbfs(mix[span] - bed[span]) - rd.dbfs(bed[span]) == pytest.approx(p.snr_db, abs=1e-6)


def test_bearing_links_and_labels(small: ModuleType, tmp_path: Path) -> None:
    data = _make_data(tmp_path / "data")
    small.build(data, tmp_path / "out", ["bearing"])
    folder = tmp_path / "out" / "bearing"
    train = sorted(p.name for p in (folder / "train").iterdir())
    assert train == ["section_00_source_test_normal_0000_pat_00.flac", "section_00_source_test_normal_0002_pat_00.flac"]
    assert all((folder / "train" / n).resolve().is_file() for n in train)
    for sub, domain in (("test_source", "source"), ("test_target", "target")):
        clips = sorted((folder / sub).glob("*.flac"))
        assert len(clips) == 2 and all(domain in c.name for c in clips)
        for c in clips:
            truth = json.loads(c.with_suffix(".json").read_text())
            assert truth["duration_s"] == 0.5
            assert truth["anomalies"] == (
                [{"start": 0, "end": 0.5, "modalities": ["audio"], "kind": "bearing anomaly"}]
                if "anomaly" in c.name
                else []
            )


def test_dcase_clip_figures() -> None:
    y = np.array([0, 0, 0, 0, 1, 1], dtype=bool)
    assert rd.partial_auc(np.array([1, 2, 3, 4, 5, 6.0]), y) == pytest.approx(1.0)
    # every anomaly below every normal: no area under FPR 0.1, McClish's floor
    assert rd.partial_auc(np.array([6, 5, 4, 3, 2, 1.0]), y) == pytest.approx(0.5 * (1 - 0.005 / 0.095))
    clips = {
        "s_n": {"domain": "source", "anomaly": False, "score": 0.1, "rms_dbfs": -40.0},
        "s_a": {"domain": "source", "anomaly": True, "score": 0.9, "rms_dbfs": -41.0},
        "t_n": {"domain": "target", "anomaly": False, "score": 0.95, "rms_dbfs": -39.0},
        "t_a": {"domain": "target", "anomaly": True, "score": 0.5, "rms_dbfs": -42.0},
    }
    m = rd.dcase_metrics(clips)
    assert m["source"]["auc"] == 1.0  # source normals against both anomalies, as the DCASE evaluator does
    assert m["target"]["auc"] == 0.0
    assert m["all"]["auc"] == 0.5 and m["all"]["rms_auc"] == 0.0


def test_events_note_counts_the_anomalies_that_opened_an_event() -> None:
    report = {"anomalies": 5, "event_recall": 0.4, "false_alarms": 1}
    assert rd._events_note(report) == "events: 2 of 5 anomalies, 1 false alarms"
    # an all-normal input: edge eval's recall is NaN, nothing was there to open
    assert rd._events_note({"anomalies": 0, "event_recall": float("nan"), "false_alarms": 0}) == (
        "events: 0 of 0 anomalies, 0 false alarms"
    )
