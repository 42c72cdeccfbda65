"""Mistakes a user makes get one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import DEFAULT_MODEL, ROOT


def edge(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def write_config(tmp_path: Path, body: str) -> Path:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(textwrap.dedent(body))
    return cfg


def one_clear_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("edge: "), proc.stderr
    return proc.stderr


def test_missing_file(tmp_path):
    cfg = write_config(
        tmp_path,
        f"""
        model: {DEFAULT_MODEL}
        cameras: [{{id: cam1, url: nowhere.mkv, replay: fast}}]
    """,
    )
    err = one_clear_line(edge("run", "-c", str(cfg), cwd=tmp_path))
    assert "cam1" in err and "nowhere.mkv" in err and "no such file" in err
    assert len(err.strip().splitlines()) == 1


def test_file_that_is_not_media(tmp_path):
    (tmp_path / "notes.mkv").write_text("shopping list: eggs, milk\n" * 50)
    cfg = write_config(
        tmp_path,
        f"""
        model: {DEFAULT_MODEL}
        cameras: [{{id: cam1, url: notes.mkv, replay: fast}}]
    """,
    )
    err = one_clear_line(edge("run", "-c", str(cfg), cwd=tmp_path))
    assert "notes.mkv" in err and "not a media file" in err
    assert len(err.strip().splitlines()) == 1


def test_rtsp_where_nothing_listens_is_bounded_and_redacted(tmp_path, unused_tcp_port):
    cfg = write_config(
        tmp_path,
        f"""
        model: {DEFAULT_MODEL}
        cameras:
          - id: door
            url: rtsp://admin:hunter2@127.0.0.1:{unused_tcp_port}/stream1
            open_timeout_s: 2
    """,
    )
    proc = edge("run", "-c", str(cfg), cwd=tmp_path, timeout=30)
    err = one_clear_line(proc)
    assert "door" in err and "connection refused" in err
    assert "hunter2" not in err + proc.stdout


def test_invalid_config_lists_every_problem_with_its_line(tmp_path):
    cfg = write_config(
        tmp_path,
        """\
        site: lobby
        cameras:
          - id: cam1
            url: a.mkv
            colour: red
          - id: cam2
            url: b.mkv
            open_timeout_s: soon
        events:
          threshold: 3
    """,
    )
    proc = edge("run", "-c", str(cfg), cwd=tmp_path)
    err = one_clear_line(proc)
    assert proc.returncode == 2
    assert "line 5: cameras.0.colour: Extra inputs are not permitted" in err
    assert "line 8: cameras.1.open_timeout_s" in err and "number" in err


def test_a_camera_url_of_another_scheme_is_refused_without_its_password(tmp_path):
    cfg = write_config(
        tmp_path,
        """\
        cameras:
          - id: gate
            url: http://admin:hunter2@10.0.0.5/video.mjpg
    """,
    )
    proc = edge("run", "-c", str(cfg), cwd=tmp_path)
    err = one_clear_line(proc)
    assert proc.returncode == 2 and "hunter2" not in err
    assert "line 3: cameras.0.url" in err and "http://***@10.0.0.5/***: cameras are read over rtsp://" in err


def test_validate_config_accepts_the_shipped_configs():
    for name in ("demo.yaml", "site.yaml"):
        proc = edge("validate-config", str(ROOT / "configs" / name), cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        assert "ok" in proc.stdout


def test_missing_model_package(tmp_path):
    cfg = write_config(
        tmp_path,
        """
        model: no-such-model
        cameras: [{id: cam1, url: x.mkv}]
    """,
    )
    err = one_clear_line(edge("run", "-c", str(cfg), cwd=tmp_path))
    assert "model package not found" in err and "no-such-model" in err


def test_missing_config_file(tmp_path):
    err = one_clear_line(edge("run", "-c", str(tmp_path / "absent.yaml"), cwd=tmp_path))
    assert "no such file" in err


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help_does_not_import_torch(argv, tmp_path):
    code = (
        f"import sys, runpy; sys.argv=['edge', *{argv!r}]\n"
        "try:\n    runpy.run_module('edge.cli', run_name='__main__')\n"
        "except SystemExit: pass\nassert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr


def test_train_where_the_package_cannot_be_written(tmp_path):
    pytest.importorskip("torch", reason="training needs the train extra (torch)")
    (tmp_path / "models").write_text("a file where the folder should be")
    err = one_clear_line(
        edge("train", "--normal", str(ROOT / "samples" / "test_1.mkv"), "--out", "models/gate", cwd=tmp_path)
    )
    assert "models: a file, not a folder" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["score", "eval", "replay"])
def test_commands_that_read_recordings_refuse_a_live_camera_without_its_password(tmp_path, command):
    err = one_clear_line(edge(command, "rtsp://admin:hunter2@10.0.0.5/stream1", cwd=tmp_path))
    assert f"rtsp://***@10.0.0.5/stream1 is a live camera: edge {command} reads recordings" in err
    assert "edge run" in err and "hunter2" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--normal", "x.mkv", "--out", "m", "--minutes", "-1"],
        ["train", "--normal", "x.mkv", "--out", "m", "--record-minutes", "0"],
        ["score", "x.mkv", "--batch", "0"],
        ["replay", "x.mkv", "--duration", "-5"],
    ],
)
def test_a_number_that_makes_no_sense_is_a_usage_error_naming_it(tmp_path, argv):
    proc = edge(*argv, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "expected a positive" in proc.stderr and repr(argv[-1]) in proc.stderr


def test_a_truncated_file_is_one_clear_line_not_a_quiet_success(tmp_path):
    clip = tmp_path / "cut.mkv"
    clip.write_bytes((ROOT / "samples" / "test_1.mkv").read_bytes()[:200_000])  # ~11 s of its 45 s
    proc = edge("replay", str(clip), "--outbox", str(tmp_path / "o.db"), "-q", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("edge: ")]
    assert "camera cut:" in line and "truncated: its data ends at 11" in line and "45.1 s its header declares" in line


def test_a_whole_file_still_replays_cleanly(tmp_path):
    proc = edge(
        "replay", str(ROOT / "samples" / "tamper_moved.mkv"), "--outbox", str(tmp_path / "o.db"), "-q", cwd=tmp_path
    )
    assert proc.returncode == 0 and "truncated" not in proc.stderr, proc.stderr


def test_a_config_that_is_not_utf8_is_one_clear_line(tmp_path):
    cfg = tmp_path / "site.yaml"
    cfg.write_bytes(b"site: lobby\nname: caf\xe9\ncameras: [{id: a, url: x.mkv}]\n")
    proc = edge("validate-config", str(cfg), cwd=tmp_path)
    err = one_clear_line(proc)
    assert proc.returncode == 2 and "line 2: not UTF-8 text (byte 0xe9)" in err


def test_a_port_out_of_range_is_a_config_error_with_its_line(tmp_path):
    cfg = write_config(
        tmp_path,
        """\
        cameras:
          - id: door
            url: rtsp://admin:hunter2@10.0.0.5:99999/stream1
    """,
    )
    proc = edge("validate-config", str(cfg), cwd=tmp_path)
    err = one_clear_line(proc)
    assert proc.returncode == 2 and "hunter2" not in err
    assert "line 3: cameras.0.url" in err and "port '99999' is not a number in 1-65535" in err


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    # 389 bytes that expand to 9^7 (4.8 million) strings
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdef", "bcdefg", strict=True):
        rows.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    rows.append("cameras: [*g]")
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text("\n".join(rows) + "\n")
    assert len(cfg.read_bytes()) < 500
    # VmHWM: this process's peak RSS (ru_maxrss would count the pytest process it was forked from)
    code = (
        "import re, sys\nfrom edge.cli import main\nrc = main(['validate-config', sys.argv[1]])\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "print(int(hwm) // 1024, file=sys.stderr)\nsys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(cfg)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "alias bomb" in proc.stderr and "line 6" in proc.stderr  # where the expansion passes the bound
    assert int(proc.stderr.split()[-1]) < 200  # MB of peak RSS: it was never expanded


def test_replay_of_a_camera_with_credentials_in_its_query_string_hides_them(tmp_path):
    err = one_clear_line(edge("replay", "rtsp://10.0.0.5/s?user=admin&password=hunter2", cwd=tmp_path))
    assert "rtsp://10.0.0.5/s?user=***&password=*** is a live camera" in err
    assert "hunter2" not in err and "admin" not in err


def test_cameras_named_from_a_config_need_the_config_and_must_exist(tmp_path):
    cfg = write_config(tmp_path, 'cameras: [{id: gate, url: "rtsp://admin:hunter2@10.0.0.5/stream1"}]\n')
    for argv, expected in [
        (["train", "--out", "m"], "nothing to learn from: give --normal footage or -c site.yaml --camera ID"),
        (["train", "--camera", "gate", "--out", "m"], "--camera names a camera of a config file"),
        (["train", "-c", str(cfg), "--camera", "door", "--out", "m"], "has no camera door (its cameras: gate)"),
        (["record", "-c", str(cfg), "--camera", "door"], "has no camera door (its cameras: gate)"),
        (["record", "rtsp://10.0.0.5/s", "-c", str(cfg), "--camera", "gate"], "give a camera's URL or -c"),
    ]:
        proc = edge(*argv, cwd=tmp_path)
        err = one_clear_line(proc)
        assert proc.returncode == 2 and expected in err and "hunter2" not in err, (argv, err)
