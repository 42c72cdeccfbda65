"""The CLI's everyday commands: replay without a config, doctor, health endpoint output."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, SAMPLES

from edge.health import Snapshot, render_metrics


def edge(*args: str, cwd, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_replay_a_clip_without_a_config(tmp_path):
    proc = edge("replay", str(SAMPLES / "test_1.mkv"), "--json", "-q", "--outbox", str(tmp_path / "o.db"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["events_new"] >= 1 and summary["events_new"] == summary["events_end"]
    assert summary["cameras"]["test_1"]["frames_scored"] > 200
    assert summary["engines"] == "onnxruntime cpu fp32 threads=1 (video, audio, temporal)"  # the default engine


def test_doctor_reports_each_check_and_passes_the_demo_config(tmp_path):
    proc = edge("doctor", "-c", str(ROOT / "configs" / "demo.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ok  ] decoding" in proc.stdout and "[ok  ] model" in proc.stdout
    assert proc.stdout.strip().endswith("-- ready")


def test_metrics_carry_camera_ids_and_states_never_urls():
    snap = Snapshot(cameras={"door": {"state": "backoff", "frames": 12, "drops": 3}}, outbox={"pending": 2})
    text = render_metrics(snap)
    assert 'lepton_frames_captured_total{camera="door"} 12' in text
    assert 'lepton_dropped_total{camera="door"} 3' in text
    assert 'lepton_source_state{camera="door",state="backoff"} 1' in text
    assert 'lepton_source_state{camera="door",state="streaming"} 0' in text
    assert "lepton_outbox_pending 2" in text
    assert not snap.healthy()


def test_running_daemon_serves_health_and_metrics(tmp_path, unused_tcp_port):
    import time
    import urllib.request

    cfg = tmp_path / "site.yaml"
    cfg.write_text(f"""
site: health
outbox: {{path: {tmp_path / "o.db"}}}
health: {{port: {unused_tcp_port}}}
cameras: [{{id: door, url: "{SAMPLES / "normal_eval.mkv"}", replay: realtime}}]
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "-c", str(cfg), "--duration", "8", "-q"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        health = metrics = None
        while time.monotonic() < deadline and metrics is None:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/healthz", timeout=2) as r:
                    health = json.loads(r.read())
                with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/metrics", timeout=2) as r:
                    text = r.read().decode()
                if 'lepton_frames_scored_total{camera="door"}' in text and health["cameras"]["door"]["frames"]:
                    metrics = text
            except OSError:
                continue
        assert metrics is not None, proc.stderr.read() if proc.poll() is not None else "no metrics"
        assert health["healthy"] and health["cameras"]["door"]["state"] == "streaming"
        assert 'lepton_source_state{camera="door",state="streaming"} 1' in metrics
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0
