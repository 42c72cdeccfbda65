"""An installed package works like the checkout: the default model and the site template are package data, found
with ``importlib.resources``, and the commands work from any directory.

The slow test builds the wheel from a copy of the working tree (what a clone holds), installs it into a fresh
venv (its dependencies from pip's cache or the registry) and runs ``edge`` and ``alerts`` from a folder outside the
repository, with nothing of the checkout on the path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES

from edge.cli import main
from edge.config import EdgeConfig, load_config
from pipeline.models.default_package import default_package_dir
from pipeline.models.package import ModelPackage


def test_the_default_package_is_package_data_of_pipeline_models():
    root = default_package_dir()
    assert root == ROOT / "pipeline" / "models" / "default"
    assert ModelPackage.load(root).package_id
    assert EdgeConfig.model_validate({"cameras": [{"id": "a", "url": "/x.mkv"}]}).model == root


def test_edge_init_writes_the_site_template_that_validates_anywhere(tmp_path, capsys):
    out = tmp_path / "elsewhere" / "site.yaml"
    out.parent.mkdir()
    assert main(["init", str(out)]) == 0
    assert out.read_text() == (ROOT / "configs" / "site.yaml").read_text()
    cfg = load_config(out)  # its relative paths, if any, would now point nowhere
    assert cfg.model == default_package_dir() and len(cfg.cameras) == 2
    assert "edge validate-config" in capsys.readouterr().out


def test_edge_init_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "site.yaml"
    out.write_text("site: mine\n")
    assert main(["init", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == "site: mine\n"
    assert main(["init", "--force", str(out)]) == 0
    assert out.read_text().startswith("# A site template")


def _copy_tree(dst: Path) -> None:
    """The working tree as a clone would hold it: tracked and untracked-but-not-ignored files, links kept."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = ROOT / rel
        if not src.exists() and not src.is_symlink():  # deleted in the working tree
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel, follow_symlinks=False)


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH, no venv of the checkout: only what the fresh venv installed."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_wheel_installs_into_a_fresh_venv_and_runs_from_anywhere(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy the working tree from")
    src, dist, venv, work = (tmp_path / d for d in ("src", "dist", "venv", "work"))
    _copy_tree(src)
    # the build backend (setuptools) of the test's own venv: offline, and the same one `pip install .` would get
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("lepton_edge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "pipeline/models/default/model.json",
        "pipeline/models/default/video.onnx",
        "edge/templates/site.yaml",
        "alerts/event.schema.json",
    } <= names
    assert not any(n.startswith(("tests/", "samples/", "benchmarks/")) for n in names)

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=480,
        env=_clean_env(),
    )
    work.mkdir()

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / argv[0]), *argv[1:]],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=180,
            env=_clean_env(),
        )

    where = run(
        "python",
        "-c",
        "import edge, pipeline.models.default_package as d; print(edge.__file__); print(d.default_package_dir())",
    )
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout

    replay = run("edge", "replay", str(SAMPLES / "test_1.mkv"), "--json")
    assert replay.returncode == 0, replay.stderr
    summary = json.loads(replay.stdout.splitlines()[-1])
    assert summary["events_new"] >= 1 and summary["events_new"] == summary["events_end"]
    tail = run("alerts", "tail")  # the outbox in the working directory: .lepton/outbox.db
    assert tail.returncode == 0, tail.stderr
    assert " new " in tail.stdout and " end " in tail.stdout

    assert run("edge", "init", "site.yaml").returncode == 0
    check = run("edge", "validate-config", "site.yaml")
    assert check.returncode == 0, check.stderr
    assert f"model {venv}" in check.stdout  # the bundled package, inside the venv

    # `edge run -c` on a config in another folder: its relative clip path is relative to the config file
    cfg_dir = tmp_path / "site"
    cfg_dir.mkdir()
    shutil.copy(SAMPLES / "test_2.mkv", cfg_dir / "clip.mkv")
    (cfg_dir / "replay.yaml").write_text("site: s\ncameras:\n  - {id: cam, url: clip.mkv, replay: fast}\n")
    proc = run("edge", "run", "-c", str(cfg_dir / "replay.yaml"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["events_new"] >= 1
