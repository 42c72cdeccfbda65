"""The bundled default package on footage it never saw: the held-out normal clip exceeds the calibrated threshold
about as rarely as calibrated (3.0 = 1 in 1000), in every modality, and opens no event; a labelled clip's
anomalies are found."""

from __future__ import annotations

from conftest import DEFAULT_MODEL, SAMPLES

from pipeline.evaluation import evaluate
from pipeline.models.package import ModelPackage


def test_normal_clip_stays_below_threshold_and_anomalies_are_found() -> None:
    report = evaluate([str(SAMPLES / "normal_eval.mkv"), str(SAMPLES / "test_1.mkv")],
                      ModelPackage.load(DEFAULT_MODEL))
    normal = report["clips"]["normal_eval.mkv"]
    for modality in ("video", "temporal", "audio", "fused"):
        assert normal[modality]["normal_rate_ge_3"] <= 0.01, (modality, normal[modality])
    assert normal["events"]["events"] == 0
    assert report["clips"]["test_1.mkv"]["events"]["recalled"] == 4
    assert report["video_auc"] > 0.9 and report["audio_auc"] > 0.8


def test_the_default_package_learned_from_what_make_model_makes() -> None:
    """The committed training clips and the extra normal footage the generator makes on demand, in that order; the
    committed ones are the very files here."""
    from pipeline.models.train import source_sha256
    from samples import generate

    sources = ModelPackage.load(DEFAULT_MODEL).trained_on.sources
    normal = [c for c in generate.CLIPS if c.name.startswith("normal_train")] + list(generate.EXTRA_NORMAL_CLIPS)
    assert [s.name for s in sources] == [f"samples/{c.name}.mkv" for c in normal]
    assert len({c.seed for c in (*generate.CLIPS, *generate.EXTRA_NORMAL_CLIPS, *generate.TAMPER_CLIPS)}) == len(
        generate.CLIPS) + len(generate.EXTRA_NORMAL_CLIPS) + len(generate.TAMPER_CLIPS)
    for s in sources[:2]:
        assert s.sha256 == source_sha256(str(SAMPLES / s.name.removeprefix("samples/")))
