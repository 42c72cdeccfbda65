"""``docs/configuration.md`` is generated from the config models and committed: it must be what they say now."""

from __future__ import annotations

from conftest import ROOT

from edge import config_docs
from edge.config import CameraConfig, EdgeConfig
from pipeline.aggregator import AggregatorSettings


def test_the_committed_configuration_reference_is_current():
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == config_docs.render(), "regenerate it: python -m edge.config_docs"


def test_every_field_of_every_section_is_documented_with_its_description():
    text = config_docs.render()
    for model in (EdgeConfig, CameraConfig, AggregatorSettings):
        for name, field in model.model_fields.items():
            row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
            assert " ".join((field.description or "").split()).replace("``", "`") in row.replace("\\|", "|")
    assert "| `threshold` | number | `3.0` | > 0, ≤ 10 |" in text
    assert "## cameras[].microphone" in text and "## engine (type: tensorrt)" in text


def test_check_fails_on_a_stale_file_and_passes_on_a_current_one(tmp_path, capsys):
    out = tmp_path / "configuration.md"
    out.write_text("# old\n")
    assert config_docs.main(["--check", "--out", str(out)]) == 1
    assert "not current" in capsys.readouterr().err
    assert config_docs.main(["--out", str(out)]) == 0
    assert config_docs.main(["--check", "--out", str(out)]) == 0
