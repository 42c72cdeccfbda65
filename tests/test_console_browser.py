"""The console in a real browser: Debian's chromium, headless, driven by Playwright (pointed at the system
browser: Playwright's own download is not reachable here).

* after the demo's replay, ``edge console`` lists its events; the selected one shows its snapshot with the
  heat-map (loaded: natural width > 0), its clip plays far enough to know its duration, its timeline is drawn;
  the verdict key stores the verdict;
* a daemon fed by ``edge simulate`` serves the live page: each camera's tile shows its state, and the state of a
  camera whose simulator is killed changes.

``LEPTON_SCREENSHOTS=docs`` saves each page's screenshot there (the ones README shows); otherwise they go to
the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.store import EventStore

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EDGE = [sys.executable, "-m", "edge.cli"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("no chromium: apt-get install -y chromium (make system-deps installs it)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("LEPTON_SCREENSHOTS") or tmp_path)
    page.screenshot(path=str(folder / name), full_page=False)


def first_line(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> str:
    """The first line the process prints (its URL), or a failure with what it said."""
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line or time.monotonic() > deadline:
        proc.kill()
        raise AssertionError(f"no line from {proc.args!r}: {proc.communicate()[1]}")
    return line


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.mark.timeout(300)
def test_the_review_page_after_the_demo(browser: Any, tmp_path: Path) -> None:
    run = subprocess.run(
        [*EDGE, "run", "-c", str(ROOT / "configs" / "demo.yaml"), "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    with EventStore(tmp_path / ".lepton" / "outbox.db", readonly=True) as store:
        n_events = len(store.events())
    assert n_events >= 10
    console = subprocess.Popen(
        [*EDGE, "console", "--port", "0"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = first_line(console).split()[2]  # console on http://127.0.0.1:PORT/review  (...)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        assert page.locator("#events li.event").count() == n_events
        picture_only = page.locator(".mods", has_text=re.compile(r"^(temporal )?video$"))
        page.locator("#events li.event").filter(has=picture_only).first.locator("a").click()  # a heat-map to see
        page.wait_for_url(lambda u: "event=" in u)
        event_id = page.locator("#selected").get_attribute("data-event-id")
        image = page.locator("#snapshot")
        assert "heatmap.jpg" in (image.get_attribute("src") or "")
        page.wait_for_function("() => document.getElementById('snapshot').complete")
        assert page.evaluate("() => document.getElementById('snapshot').naturalWidth") > 0
        duration = page.evaluate("""() => new Promise((resolve, reject) => {
            const v = document.getElementById('clip');
            if (v.readyState >= 1) { resolve(v.duration); return; }
            v.addEventListener('loadedmetadata', () => resolve(v.duration));
            v.addEventListener('error', () => reject(new Error('video error ' + (v.error && v.error.code))));
        })""")
        assert duration > 0
        assert page.locator("svg.timeline polyline.series").count() >= 2
        assert page.locator("svg.timeline line.threshold").count() == 1
        screenshot(page, "console-review.png", tmp_path)
        page.keyboard.press("n")
        page.wait_for_function("() => document.getElementById('verdict').textContent === 'normal'")
        with urllib.request.urlopen(url.replace("/review", f"/api/events/{event_id}"), timeout=5) as r:  # noqa: S310
            assert json.loads(r.read())["verdict"] == "normal"
        page.keyboard.press("j")
        page.wait_for_url(lambda u: "event=" in u)
        assert page.locator("#selected").get_attribute("data-event-id") != event_id
        page.keyboard.press("r")
        page.wait_for_function("() => document.getElementById('verdict').textContent === 'real'")
    finally:
        assert stop(console) == 0
    with EventStore(tmp_path / ".lepton" / "outbox.db", readonly=True) as store:
        verdicts = {e.message.event_id: e.verdict.verdict for e in store.events() if e.verdict is not None}
    assert verdicts[event_id] == "normal" and sorted(verdicts.values()) == ["normal", "real"]


@pytest.mark.timeout(300)
def test_the_live_page_shows_camera_states_from_a_running_daemon(
    browser: Any, tmp_path: Path, unused_tcp_port: int
) -> None:
    from edge import simulate

    if problem := simulate.gstreamer_problem():
        pytest.fail(problem, pytrace=False)
    sim = subprocess.Popen(
        [
            *EDGE,
            "simulate",
            str(SAMPLES / "test_1.mkv"),
            "--path",
            "lobby",
            "--port",
            "0",
            "--mount",
            f"yard={SAMPLES / 'test_2.mkv'}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon = None
    try:
        urls = [first_line(sim).split()[-1] for _ in range(2)]
        cfg = tmp_path / "site.yaml"
        cfg.write_text(
            textwrap.dedent(f"""\
            site: rehearsal
            outbox: {{path: {tmp_path / "outbox.db"}}}
            media: {{path: {tmp_path / "media"}}}
            health: {{port: {unused_tcp_port}}}
            cameras:
              - {{id: lobby, url: "{urls[0]}", snapshots: {{enabled: true}}, backoff_max_s: 2}}
              - {{id: yard, url: "{urls[1]}", backoff_max_s: 2}}
        """)
        )
        daemon = subprocess.Popen(
            [*EDGE, "run", "-c", str(cfg), "-q"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        deadline = time.monotonic() + 60
        while True:
            try:
                page.goto(f"http://127.0.0.1:{unused_tcp_port}/live")
                break
            except Exception:  # noqa: BLE001 - the daemon is still starting
                assert daemon.poll() is None and time.monotonic() < deadline, daemon.communicate()[1]
                time.sleep(0.5)
        for cam in ("lobby", "yard"):
            page.wait_for_function(
                f"() => document.querySelector('.tile[data-camera=\"{cam}\"] .state').textContent === 'streaming'",
                timeout=60_000,
            )
        page.wait_for_function(
            "() => document.querySelector('.tile[data-camera=\"lobby\"] .frame img') && "
            "document.querySelector('.tile[data-camera=\"lobby\"] .frame img').naturalWidth > 0",
            timeout=20_000,
        )
        width = page.evaluate("() => document.querySelector('.tile[data-camera=\"lobby\"] .frame img').naturalWidth")
        assert width == 256  # the model's input size: no extra decoding
        page.wait_for_function("() => /[0-9.]+ fps/.test(document.querySelector('.tile .fps').textContent)")
        time.sleep(12)  # a sparkline of some seconds
        page.set_viewport_size({"width": 1000, "height": 420})
        screenshot(page, "console-live.png", tmp_path)
        sim.send_signal(signal.SIGKILL)
        sim.wait(10)
        page.wait_for_function(
            "() => document.querySelector('.tile[data-camera=\"yard\"] .state').textContent !== 'streaming'",
            timeout=30_000,
        )
        state = page.locator('.tile[data-camera="yard"] .state').text_content()
        assert state in ("connecting", "backoff", "stalled", "failed")
    finally:
        if daemon is not None:
            assert stop(daemon) == 0, daemon.communicate()[1] if daemon.poll() is None else ""
        stop(sim)
