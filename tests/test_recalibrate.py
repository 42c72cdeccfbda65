"""The teach loop: an event marked normal is folded into the calibration; replayed again, it no longer opens."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from alerts.schema import EventMessage
from pipeline.calibration import Calibration
from pipeline.models.package import ModelPackage
from pipeline.recalibrate import fold

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
EDGE = [sys.executable, "-m", "edge.cli"]


def test_folding_caps_the_marked_scores_and_leaves_normal_ones_alone() -> None:
    rng = np.random.default_rng(0)
    cal = Calibration.fit(rng.exponential(1.0, 5000))
    marked = np.array([2.0, 5.0, 30.0, 40.0, 60.0, 80.0])
    assert cal.calibrate(np.array([80.0]))[0] > 10
    new = fold(cal, marked, threshold=3.0)
    normal = np.linspace(0.0, cal.raw_threshold(2.4), 50)
    assert np.allclose(new.calibrate(normal), cal.calibrate(normal), atol=0.02)  # below the cap: as before
    assert new.calibrate(marked).max() == pytest.approx(2.5, abs=0.01)
    assert new.calibrate(np.array([30.0]))[0] <= 2.5 + 1e-6
    beyond = new.calibrate(np.array([80.0, 120.0, 400.0]))
    assert beyond[0] < beyond[1] < beyond[2] and beyond[2] > 3.0  # what stands out from the marked ones still does
    assert new.n_samples == cal.n_samples + marked.size
    assert fold(cal, np.array([0.5, 1.0]), threshold=3.0) is cal  # already normal: nothing to fold
    assert Calibration.from_dict(new.to_dict()) == new  # storable in model.json


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*EDGE, *args], cwd=cwd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def ended(cwd: Path, outbox: str) -> list[EventMessage]:
    tail = subprocess.run(
        [sys.executable, "-m", "alerts.cli", "tail", "--json", "--outbox", outbox],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tail.returncode == 0, tail.stderr
    return [m for m in map(EventMessage.from_json, tail.stdout.splitlines()) if m.type == "end"]


def overlaps(msg: EventMessage, start: float, end: float) -> bool:
    return msg.start_pts <= end and (msg.end_pts or msg.start_pts) >= start


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_parked_van_marked_normal_no_longer_opens_and_every_other_anomaly_still_does(tmp_path: Path) -> None:
    truth = json.loads((SAMPLES / "test_2.json").read_text())["anomalies"]
    van = next(a for a in truth if a["kind"] == "large_object")
    site = tmp_path / "site.yaml"
    site.write_text(
        textwrap.dedent(f"""\
        site: teach
        cameras:
          - {{id: plaza-2, url: "{SAMPLES / "test_2.mkv"}", replay: fast, snapshots: {{enabled: true}},
              clips: {{enabled: true}}}}
    """)
    )
    run("run", "-c", str(site), "-q", cwd=tmp_path)
    first = ended(tmp_path, ".lepton/outbox.db")
    [van_event] = [m for m in first if overlaps(m, van["start"], van["end"])]
    assert van_event.clip is not None and {"video", "temporal"} <= set(van_event.modalities)
    run("feedback", van_event.event_id, "normal", "--note", "the van parks there", "-c", str(site), cwd=tmp_path)
    report = json.loads(
        run(
            "recalibrate", "--camera", "plaza-2", "-c", str(site), "--out", "models/plaza-2", "--json", cwd=tmp_path
        ).stdout
    )
    assert set(report["modalities"]) == {"video", "temporal"}  # what the van event named; audio untouched
    assert all(m["clip_max"][1] < 3.0 for m in report["modalities"].values())
    package = ModelPackage.load(tmp_path / "models" / "plaza-2")
    assert package.version == report["version_to"] != report["version_from"]
    assert any(van_event.event_id in s.name and "marked normal" in s.name for s in package.trained_on.sources)
    taught = tmp_path / "taught.yaml"
    taught.write_text(
        textwrap.dedent(f"""\
        site: teach
        model: models/plaza-2
        outbox: {{path: .lepton/taught.db}}
        cameras:
          - {{id: plaza-2, url: "{SAMPLES / "test_2.mkv"}", replay: fast}}
    """)
    )
    run("run", "-c", str(taught), "-q", cwd=tmp_path)
    second = ended(tmp_path, ".lepton/taught.db")
    assert not [m for m in second if overlaps(m, van["start"], van["end"])], "the van opened an event again"
    for a in truth:
        if a is not van:
            assert any(overlaps(m, a["start"] - 0.5, a["end"] + 0.5) for m in second), a["kind"]
    assert {m.model.version for m in second} == {package.version}  # events say which calibration decided them
    again = subprocess.run(
        [
            *EDGE,
            "recalibrate",
            "--camera",
            "plaza-2",
            "-c",
            str(taught),
            "--outbox",
            ".lepton/outbox.db",
            "--media",
            ".lepton/media",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1 and "not folded yet" in again.stderr  # the taught package has it: once only
