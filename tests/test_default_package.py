"""The bundled default package on footage it never saw: the held-out normal clip exceeds the calibrated threshold
about as rarely as calibrated (3.0 = 1 in 1000), in every modality, and opens no event; a labelled clip's
anomalies are found, each model above its trivial baseline (frame difference, RMS level)."""

from __future__ import annotations

import numpy as np
from conftest import DEFAULT_MODEL, SAMPLES

from pipeline.models.package import ModelPackage
from pipeline.quality import evaluate


def test_normal_clip_stays_below_threshold_and_anomalies_are_found() -> None:
    report = evaluate([str(SAMPLES / "normal_eval.mkv"), str(SAMPLES / "test_1.mkv")], ModelPackage.load(DEFAULT_MODEL))
    normal = report["clips"]["normal_eval.mkv"]
    for modality in ("video", "temporal", "audio", "fused"):
        assert normal[modality]["normal_rate_ge_3"] <= 0.01, (modality, normal[modality])
    assert normal["events"]["events"] == 0
    assert report["clips"]["test_1.mkv"]["events"]["recalled"] == 4
    # each model ranks the frames / windows better than its trivial baseline on the same input
    assert report["video_auc"] > report["video_baseline_auc"] + 0.02
    assert report["audio_auc"] > report["audio_baseline_auc"] + 0.02


def test_the_default_package_learned_from_what_make_model_makes() -> None:
    """The committed training clips and the extra normal footage the generator makes on demand, in that order; the
    committed ones are the very files here."""
    from pipeline.models.train import source_sha256
    from samples import generate

    sources = ModelPackage.load(DEFAULT_MODEL).trained_on.sources
    normal = [c for c in generate.CLIPS if c.name.startswith("normal_train")] + list(generate.EXTRA_NORMAL_CLIPS)
    assert [s.name for s in sources] == [f"samples/{c.name}.mkv" for c in normal]
    assert len({c.seed for c in (*generate.CLIPS, *generate.EXTRA_NORMAL_CLIPS, *generate.TAMPER_CLIPS)}) == len(
        generate.CLIPS
    ) + len(generate.EXTRA_NORMAL_CLIPS) + len(generate.TAMPER_CLIPS)
    for s in sources[:2]:
        assert s.sha256 == source_sha256(str(SAMPLES / s.name.removeprefix("samples/")))


def test_a_sound_counts_in_the_newest_part_of_an_audio_window_only() -> None:
    """An audio window's first 0.4 s are the recurrent model's context: a loud tone that ended there does not raise
    the window's score (so a sound stops counting 0.4 s after it ends), the same tone in the newest part does."""
    from pipeline.frames import AudioWindow
    from pipeline.scoring_model import PackageScorer
    from pipeline.sources import read_media

    audio = PackageScorer(ModelPackage.load(DEFAULT_MODEL)).audio
    assert audio is not None
    rate = audio.sample_rate
    items = read_media(
        str(SAMPLES / "normal_eval.mkv"),
        width=64,
        height=36,
        fps=5.0,
        sample_rate=rate,
        audio_window_s=audio.spec.window_s,
        audio_hop_s=3.0,
        video=False,
    )
    normal = [w.samples for w in items if isinstance(w, AudioWindow)]
    assert len(normal) >= 10
    t = np.arange(int(0.3 * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * 2500 * t) * np.hanning(len(t))).astype(np.float32)

    def scores(at_s: float | None) -> np.ndarray:
        windows = np.stack(normal).astype(np.float32)
        if at_s is not None:
            a = round(at_s * rate)
            windows[:, a : a + len(tone)] += tone
        return audio.calibrate(audio.score(windows))

    assert scores(None).max() < 3.0
    assert scores(0.05).max() < 3.0  # 0.05-0.35 s: context only
    assert scores(0.45).min() >= 3.0  # 0.45-0.75 s: scored
