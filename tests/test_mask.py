"""A camera's mask: regions of the picture that are never scored (a clock overlay, a tree in the wind, a road beyond
the fence). The worst video patch and the worst temporal cell are taken outside them."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DEFAULT_MODEL, ROOT
from fixtures.media import make_clip

from edge.config import CameraConfig
from pipeline.frames import VideoFrame
from pipeline.models.package import ModelPackage
from pipeline.runner import Runner, RunnerSettings
from pipeline.scorer import Box, Masks, masked_cells, worst_cell
from pipeline.scoring_model import PackageScorer
from pipeline.sources import SourceSpec, read_media
from pipeline.sources.spec import Region


def test_worst_cell_leaves_masked_cells_out() -> None:
    err = np.zeros((2, 3, 4), dtype=np.float32)
    err[:, 0, 0], err[:, 2, 3] = 9.0, 4.0
    masks = [
        ((0.0, 0.0, 0.2, 0.2),),  # the worst cell of the first map (its centre: 1/8, 1/6 of the frame)
        ((0.0, 0.0, 1.0, 1.0),),
    ]  # all of the second
    raw, boxes = worst_cell(err, 2, 2, 6, 8, masks)
    assert raw.tolist() == [4.0, 0.0]
    assert boxes == [(6 / 8, 4 / 6, 1.0, 1.0), None]
    raw, boxes = worst_cell(err, 2, 2, 6, 8)
    assert raw.tolist() == [9.0, 9.0] and boxes[0] == (0.0, 0.0, 0.25, 2 / 6)


def test_a_cell_is_masked_when_its_centre_is_in_a_region() -> None:
    # 4 columns of 2-pixel cells every 2 pixels on 8 pixels: centres at 1/8, 3/8, 5/8, 7/8 of the width
    grid = masked_cells(((0.0, 0.0, 0.5, 1.0),), 2, 2, 6, 8, (3, 4))
    assert grid.tolist() == [[True, True, False, False]] * 3
    grid = masked_cells(((0.3, 0.5, 0.4, 1.0), (0.8, 0.0, 1.0, 0.2)), 2, 2, 6, 8, (3, 4))
    assert grid.tolist() == [[False, False, False, True], [False, True, False, False], [False, True, False, False]]


@pytest.mark.parametrize("region", [(0.5, 0.0, 0.4, 1.0), (0.0, 0.0, 1.2, 1.0), (-0.1, 0.0, 0.5, 0.5)])
def test_a_region_must_be_a_rectangle_inside_the_picture(region: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="0 <= x0 < x1 <= 1"):
        CameraConfig(id="cam", url="a.mkv", mask=[region])


def _stacks(clip: str, times: list[float], scorer: PackageScorer) -> tuple[np.ndarray, list[float]]:
    """Every sampled frame's stack (the frame and its ``context`` predecessors) from ``times[0]`` to ``times[1]``."""
    frames, pts = [], []
    for item in read_media(clip, width=scorer.width, height=scorer.height, fps=scorer.fps, audio=False):
        if isinstance(item, VideoFrame):
            frames.append(item.luma)
            pts.append(item.pts)
    lo, hi = times
    idx = [i for i, t in enumerate(pts) if lo <= t <= hi and i >= scorer.context]
    return np.stack([np.stack(frames[i - scorer.context : i + 1]) for i in idx]), [pts[i] for i in idx]


def test_the_default_model_does_not_score_a_masked_trespasser() -> None:
    """test_1: someone walks across the front lawn (28.4-32.5 s, ground truth box [0.717, 0.479, 1.0, 0.966]). Masked,
    the worst patch and the worst temporal cell lie outside the region, and the frames score like normal ones."""
    scorer = PackageScorer(ModelPackage.load(DEFAULT_MODEL), motion_threshold=0.0)
    try:
        stacks, _ = _stacks(str(ROOT / "samples" / "test_1.mkv"), [29.0, 32.0], scorer)
        region = (0.65, 0.4, 1.0, 1.0)
        masks = [(region,)] * len(stacks)
        _, open_cal, open_boxes = scorer.score_video(stacks)
        open_emb = scorer.last_embeddings
        raw, cal, boxes = scorer.score_video(stacks, masks=masks)
        assert open_cal.max() >= 3  # found as it crosses: 1 in 1000 normal frames score this high
        assert np.median(cal) < 2 and cal.max() < open_cal.max()
        centre_in = [
            b is not None and region[0] <= (b[0] + b[2]) / 2 < region[2] and region[1] <= (b[1] + b[3]) / 2 < region[3]
            for b in boxes
        ]
        assert (
            not any(centre_in)
            and sum(
                b is not None and (b[0] + b[2]) / 2 >= region[0] and (b[1] + b[3]) / 2 >= region[1] for b in open_boxes
            )
            > len(stacks) // 2
        )
        # temporal: windows of the last ``temporal_window`` embeddings
        assert open_emb is not None
        w = scorer.temporal_window
        windows = np.stack([open_emb[i - w + 1 : i + 1] for i in range(w - 1, len(open_emb))])
        _, t_open, t_boxes_open = scorer.score_temporal(windows)
        _, t_masked, t_boxes = scorer.score_temporal(windows, masks=[(region,)] * len(windows))
        assert t_masked.max() <= t_open.max()
        assert all(
            b is None or not (region[0] <= (b[0] + b[2]) / 2 and region[1] <= (b[1] + b[3]) / 2) for b in t_boxes
        )
        everything = [((0.0, 0.0, 1.0, 1.0),)] * len(windows)
        raw_all, cal_all, boxes_all = scorer.score_temporal(windows, masks=everything)
        assert cal_all.tolist() == [0.0] * len(windows) and boxes_all == [None] * len(windows)
    finally:
        scorer.close()


class RecordingModel:
    """Scores nothing; remembers which masks came with each camera's stacks (a video-only ``ScoringModel``)."""

    width: int = 64
    height: int = 36
    fps: float = 5.0
    context: int = 2
    audio_window_s: float = 1.0
    audio_hop_s: float = 0.5
    sample_rate: int = 16000
    has_video: bool = True
    has_audio: bool = False
    temporal_window: int = 0
    temporal_every: int = 1
    last_embeddings: np.ndarray | None = None

    def __init__(self) -> None:
        self.masks: list[tuple[Region, ...]] = []
        self.last_gated = np.zeros(0, dtype=bool)

    def score_video(
        self, stacks: np.ndarray, masks: Masks | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[Box | None]]:
        assert masks is not None
        self.masks.extend(masks)
        n = len(stacks)
        return np.zeros(n), np.zeros(n), [None] * n

    def score_temporal(
        self, windows: np.ndarray, masks: Masks | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[Box | None]]:
        raise AssertionError("no temporal model")

    def score_audio(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("no audio model")


def test_the_runner_passes_each_camera_its_own_mask(tmp_path) -> None:
    a = make_clip(tmp_path / "a.mkv", seconds=2, audio=False)
    b = make_clip(tmp_path / "b.mkv", seconds=2, audio=False)
    region = (0.0, 0.5, 0.25, 1.0)
    model = RecordingModel()
    runner = Runner(
        [SourceSpec("a", str(a)), SourceSpec("b", str(b), mask=(region,))],
        model,
        lambda e: None,
        RunnerSettings(tamper=None),
    )
    assert runner.open_sources() == {}
    runner.start()
    assert runner.wait(60)
    runner.join()
    assert runner.stats["a"].frames_scored == runner.stats["b"].frames_scored == 10
    assert sorted(set(model.masks)) == [(), (region,)] and model.masks.count(()) == 10


def test_a_mask_in_the_config_reaches_the_source_spec(tmp_path) -> None:
    from edge.config import EdgeConfig

    cfg = EdgeConfig(
        cameras=[{"id": "cam", "url": "a.mkv", "mask": [[0.0, 0.0, 0.3, 0.1]]}, {"id": "other", "url": "b.mkv"}]
    )
    specs = {s.camera_id: s for s in cfg.source_specs()}
    assert specs["cam"].mask == ((0.0, 0.0, 0.3, 0.1),) and specs["other"].mask == ()


def test_motion_only_inside_the_mask_does_not_wake_the_cnn() -> None:
    """A still scene with a small mover (the motion gate's own test): the gate lets it through, unless the mover is in
    the camera's mask; then the stack scores the floor without running the CNN."""
    from test_motion_gate import still, with_mover

    scorer = PackageScorer(ModelPackage.load(DEFAULT_MODEL))
    try:
        stacks = with_mover(still(4, np.random.default_rng(0)))  # rows 50-52, columns 40-50 of 144x256
        scorer.score_video(stacks)
        assert not scorer.last_gated.any()
        _, cal, boxes = scorer.score_video(stacks, masks=[((0.1, 0.3, 0.3, 0.45),)] * 4)
        assert scorer.last_gated.all() and cal.tolist() == [0.0] * 4 and boxes == [None] * 4
        scorer.score_video(stacks, masks=[((0.5, 0.0, 1.0, 1.0),)] * 4)  # a mask elsewhere changes nothing
        assert not scorer.last_gated.any()
    finally:
        scorer.close()
