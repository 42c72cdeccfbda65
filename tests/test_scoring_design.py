"""The scoring choices that make the models hold on real footage and sound: the audio score counts only sound above
what normal sound explains; the video score is the mean of the worst patches in one unit for the whole picture;
the calibration widens by the generalisation margin and never learns from footage next to its held-out part."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.engines import create_engine
from pipeline.scorer import worst_cell

torch = pytest.importorskip("torch", reason="the model checks need torch (train extra)")


def _audio(head: str):  # -> AudioPredictor
    from pipeline.models.audio import AudioPredictor

    torch.manual_seed(0)
    model = AudioPredictor(n_mels=8, hidden=8, head=head)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


def test_audio_score_counts_sound_above_normal_and_not_below() -> None:
    model = _audio("gauss")
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.5, (1, 30, 8)).astype(np.float32))
    louder, quieter = x.clone(), x.clone()
    louder[0, 20, 2:5] += 3.0  # a sound in three bands of frame 20
    quieter[0, 20, 2:5] -= 3.0  # the scene goes quiet there instead
    with torch.no_grad():
        base, up, down = model(x)[0, 19], model(louder)[0, 19], model(quieter)[0, 19]  # frame 20's value
    assert up > base + 0.5
    assert down <= base
    with torch.no_grad():
        assert float(model(x).min()) >= 0.0


@pytest.mark.parametrize("head", ["mse", "gauss"])
def test_both_audio_heads_export_and_match(head: str, tmp_path: Path) -> None:
    """Packages of the mse head (before the gauss head) still rebuild and agree across engines."""
    from pipeline.models.export import export_onnx

    model = _audio(head)
    graph = export_onnx(
        model,
        torch.zeros(2, 30, 8),
        tmp_path / "audio.onnx",
        arch="audio_predictor",
        input_name="mel",
        output_name="frame_err",
        dynamic_axes=(0, 1),
        output_dynamic_axes=(0, 1),
    )
    x = np.random.default_rng(1).normal(0, 1, (3, 40, 8)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    engine = create_engine({"type": "onnxruntime", "intra_op_num_threads": 1})
    engine.load(graph)
    try:
        np.testing.assert_allclose(engine.infer({"mel": x})["frame_err"], want, rtol=1e-4, atol=1e-5)
    finally:
        engine.close()


def test_pooled_video_score_is_the_mean_of_the_worst_patches_outside_masks() -> None:
    err = np.zeros((2, 10, 10), np.float32)
    err[0, 0, :4] = [8, 6, 4, 2]  # the worst 4 of 100 cells
    err[1, 9, 9] = 100.0  # masked below
    err[1, 0, 0] = 5.0
    raw, boxes = worst_cell(err, 1, 1, 10, 10, [(), ((0.85, 0.85, 1.0, 1.0),)], pool_fraction=0.04)
    assert raw[0] == pytest.approx(5.0)  # (8 + 6 + 4 + 2) / 4
    assert raw[1] == pytest.approx(5.0 / 4)  # the masked 100 is left out; then 5, 0, 0, 0
    assert boxes[0] == (0.0, 0.0, 0.1, 0.1) and boxes[1] == (0.0, 0.0, 0.1, 0.1)  # the box stays the worst cell
    worst, _ = worst_cell(err, 1, 1, 10, 10)
    assert worst.tolist() == [8.0, 100.0]  # pool_fraction 0: packages before it


def test_uniform_patch_scale_is_one_level_for_the_whole_picture() -> None:
    from pipeline.models.video import VideoPredictor

    model = VideoPredictor(context=2, channels=4, patch=4, stride=2, height=32, width=48)
    errors = torch.rand(50, *model.patch_scale.shape[1:]) * torch.linspace(0.1, 10, model.patch_scale.shape[2])
    model.fit_patch_scale(errors, uniform=True)
    scale = model.patch_scale
    assert float(scale.max() - scale.min()) == 0.0
    per_patch = torch.quantile(errors.reshape(50, -1), 0.997, dim=0)
    assert float(scale.flatten()[0]) == pytest.approx(float(per_patch.median()), rel=1e-5)


def test_calibration_widens_by_how_much_scores_grew_on_footage_not_trained_on() -> None:
    from pipeline.models.calibrate import MAX_MARGIN, _calibrate

    rng = np.random.default_rng(0)
    held = rng.gamma(2.0, 1.0, 2000)

    def batches(x: np.ndarray):
        return (x[i : i + 64] for i in range(0, len(x), 64))

    plain, report = _calibrate(lambda b: b, batches(held))
    assert report["margin"] == 1.0
    widened, report = _calibrate(lambda b: b, batches(held), lambda n: batches(held[:n] / 1.5))
    assert report["margin"] == pytest.approx(1.5, rel=0.02)
    assert widened.raw_threshold(3.0) == pytest.approx(1.5 * plain.raw_threshold(3.0), rel=0.02)
    assert report["heldout_rate_ge_3"] == float(np.mean(widened.calibrate(held) >= 3.0))
    _, report = _calibrate(lambda b: b, batches(held), lambda n: batches(held[:n] / 50))
    assert report["margin"] == MAX_MARGIN
    _, report = _calibrate(lambda b: b, batches(held), lambda n: batches(held[:n] * 2))  # never narrower
    assert report["margin"] == 1.0


def test_training_stops_a_gap_before_the_held_out_part() -> None:
    from pipeline.models.package import SourceInfo
    from pipeline.models.train import GAP, HOLDOUT, NormalInput, trained_part
    from pipeline.models.train_audio import _split_audio

    audio = np.arange(100_000, dtype=np.float32)
    x = NormalInput(SourceInfo(name="a", sha256="0" * 64, duration_s=6.25), np.zeros((0, 1, 1), np.uint8), audio)
    seen, held = _split_audio(x)
    assert len(seen) == trained_part(len(audio)) == int(len(audio) * (1 - HOLDOUT - GAP))
    assert held[0] - seen[-1] > GAP * len(audio) - 1  # a gap of GAP between them
    assert len(held) == round(HOLDOUT * len(audio))


@pytest.mark.parametrize("relative", [True, False])
def test_relative_temporal_model_ignores_how_a_recording_looks(relative: bool) -> None:
    """A new recording of the same view shifts every cell's embedding by a constant: the relative temporal model,
    which follows changes from the window's first embedding, scores it exactly as before; the absolute one does not."""
    from pipeline.models.temporal import TemporalPredictor

    torch.manual_seed(0)
    model = TemporalPredictor(channels=4, grid_h=3, grid_w=5, hidden=8, window=6, score_steps=2, relative=relative)
    model.eval()
    emb = torch.randn(2, 6, 4, 3, 5)
    shifted = emb + torch.randn(1, 1, 4, 3, 5)  # the same motion, another look
    with torch.no_grad():
        same = torch.allclose(model(emb), model(shifted), atol=1e-5)
    assert same is relative


def _inputs(n: int, seconds: float = 5.0, seed: int = 0) -> list[Any]:
    from pipeline.models.package import SourceInfo
    from pipeline.models.train import SAMPLE_RATE, NormalInput

    rng = np.random.default_rng(seed)
    return [
        NormalInput(
            SourceInfo(name=f"in{k}.wav", sha256="0" * 64, duration_s=seconds),
            np.zeros((0, 1, 1), np.uint8),
            (0.05 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32),
        )
        for k in range(n)
    ]


def test_many_inputs_hold_out_whole_ones_and_few_their_tails() -> None:
    """Eight inputs or more: one in five is kept whole for the calibration (footage the model never saw, so no
    margin is measured against the trained-on part, unless they are too short to calibrate on) and the others are
    learnt from whole; fewer: each input's tail, with the margin."""
    from pipeline.models.calibrate import heldout_seconds, margin_from
    from pipeline.models.recipe import HOLDOUT, split_roles
    from pipeline.models.train_audio import _split_audio

    many = split_roles(_inputs(10))
    assert [x.role for x in many] == ["train", "train", "heldout", "train", "train"] * 2
    for x in many:
        seen, held = _split_audio(x)
        assert (len(seen), len(held)) == ((0, len(x.audio)) if x.role == "heldout" else (len(x.audio), 0))
    assert heldout_seconds([], many) == {"audio": 10.0}  # the two held-out inputs, whole

    def seen_fn(n: int) -> Any:
        return iter(())

    assert margin_from(many, seen_fn, "audio") is seen_fn  # 10 s held out: too few to go without a margin
    long = split_roles(_inputs(10, seconds=20.0))
    assert heldout_seconds([], long) == {"audio": 40.0}
    assert margin_from(long, seen_fn, "audio") is None
    few = split_roles(_inputs(7))
    assert {x.role for x in few} == {"tail"}
    assert heldout_seconds([], few) == {"audio": pytest.approx(7 * 5.0 * HOLDOUT)}
    assert margin_from(few, seen_fn, "audio") is seen_fn


def test_training_on_many_inputs_calibrates_on_whole_held_out_ones(tmp_path: Path) -> None:
    from pipeline.models.package import ModelPackage
    from pipeline.models.train import train_from_inputs

    report = train_from_inputs(
        _inputs(8, seconds=4.5), tmp_path / "m", minutes=0.02, progress=False, video=False, threads=1
    )
    assert report["heldout"] == {"audio": "whole inputs: in2.wav, in7.wav"}  # one in five, from the 3rd
    assert report["heldout_s"] == {"audio": 9.0}
    # 9 s held out, under FEW_HELDOUT_S: the margin is measured against the inputs trained on, as for tails
    assert math.isfinite(report["audio"]["calibration"]["seen_quantile"])
    assert report["audio"]["calibration"]["margin"] >= 1.0
    assert [s.name for s in ModelPackage.load(tmp_path / "m").trained_on.sources] == [f"in{k}.wav" for k in range(8)]
