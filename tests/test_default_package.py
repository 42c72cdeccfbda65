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
