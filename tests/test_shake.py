"""A shaking camera: the whole-picture move the video model measures and discounts (``global_shift``, ``shake_error``),
and the temporal model's global term."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch
else:
    torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from pipeline.models.video import VideoPredictor, global_shift  # noqa: E402


def shifted(img: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """``img`` (B, 1, h, w) sampled at (x + dx, y + dy) pixels (bilinear, border replicated); dx, dy (B,): a picture
    moved by a fraction of a pixel, as a shaking camera sees it."""
    h, w = img.shape[-2:]
    xs = (2 * torch.arange(w, dtype=img.dtype) + 1) / w - 1
    ys = (2 * torch.arange(h, dtype=img.dtype) + 1) / h - 1
    gx = xs.view(1, 1, w) + (2 / w) * dx.view(-1, 1, 1)
    gy = ys.view(1, h, 1) + (2 / h) * dy.view(-1, 1, 1)
    grid = torch.stack([gx.expand(-1, h, w), gy.expand(-1, h, w)], dim=-1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _scene(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A textured still picture (B=1, 1, h, w) in luma levels: smoothed noise, edges of every orientation."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, h + 8, w + 8, generator=g)
    x = F.avg_pool2d(F.avg_pool2d(x, 3, stride=1), 3, stride=1)  # a few pixels of correlation
    x = (x - x.mean()) / x.std()
    return (128 + 40 * x[..., 2 : 2 + h, 2 : 2 + w]).clamp(0, 255)


def test_global_shift_finds_a_subpixel_move_of_the_picture_and_ignores_a_walker() -> None:
    p = _scene(72, 128) * (4 / 255)  # the model's units (VideoPredictor.normalise), where its robust weight lives
    want = torch.tensor([0.4]), torch.tensor([-0.7])
    n = shifted(p, *want)
    dx, dy = global_shift(p, n)
    assert abs(dx.item() - 0.4) < 0.1 and abs(dy.item() + 0.7) < 0.1  # measured on 2x2-pooled maps: ~0.05 off
    walker = n.clone()
    walker[..., 30:42, 60:66] = 4.0  # something bright that appears: not a move of the picture
    dx, dy = global_shift(p, walker)
    assert abs(dx.item() - 0.4) < 0.15 and abs(dy.item() + 0.7) < 0.15
    still = global_shift(p, p)
    assert abs(still[0].item()) < 1e-3 and abs(still[1].item()) < 1e-3


def _stack(target: torch.Tensor, past: torch.Tensor, context: int) -> torch.Tensor:
    return torch.cat([past] * context + [target], dim=1)  # (1, context+1, H, W)


@pytest.mark.parametrize("shake_weight", [0.0, 2.0])
def test_shake_term_discounts_a_shaken_frame_but_not_a_new_object(shake_weight: float) -> None:
    """The untrained model predicts "nothing changes" (the newest past frame), and its patch levels come from a still
    picture with sensor noise: a steady camera. With ``shake_weight``, a frame that only moved by half a pixel scores
    far below an object that appears; without it, the move alone scores like an anomaly."""
    model = VideoPredictor(context=2, channels=4, patch=4, stride=2, height=64, width=96, shake_weight=shake_weight)
    model.eval()
    scene = _scene(64, 96)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        noisy = [_stack(scene + 2 * torch.randn(scene.shape, generator=g), scene, 2) for _ in range(20)]
        model.fit_patch_scale(torch.cat([model.patch_errors(x) for x in noisy]))
        shaken = shifted(scene, torch.tensor([0.5]), torch.tensor([-0.5]))
        with_object = scene.clone()
        with_object[..., 20:28, 40:46] = 250.0
        shake = model(_stack(shaken, scene, 2)).max().item()
        obj = model(_stack(with_object, scene, 2)).max().item()
        still = model(noisy[0]).max().item()
    assert obj > 100 * still  # the object is found either way
    if shake_weight:
        assert shake < 0.01 * obj
    else:
        assert shake > 100 * still


@pytest.mark.parametrize("global_weight", [0.0, 4.0])
def test_temporal_global_term_discounts_every_cell_moving_at_once(global_weight: float) -> None:
    """A shaking camera jitters every cell's embedding at once; an unusual mover changes a few. With
    ``global_weight`` the first scores far lower than without, the second about the same."""
    from pipeline.models.temporal import TemporalPredictor

    torch.manual_seed(0)
    model = TemporalPredictor(
        4, 3, 4, hidden=8, window=6, score_steps=2, copy_weight=0.5, global_weight=global_weight
    ).eval()
    g = torch.Generator().manual_seed(2)
    still = 0.05 * torch.randn(1, 6, 4, 3, 4, generator=g)
    jolt = torch.randn(1, 3, 4, 3, 4, generator=g)
    shaken, mover = still.clone(), still.clone()
    shaken[:, -3:] += jolt
    mover[:, -3:, :, 1, 2] += jolt[..., 1, 2]
    with torch.no_grad():
        s_shake, s_mover = model(shaken).max().item(), model(mover).max().item()
        base = TemporalPredictor(4, 3, 4, hidden=8, window=6, score_steps=2, copy_weight=0.5).eval()
        base.load_state_dict(model.state_dict())
        b_shake, b_mover = base(shaken).max().item(), base(mover).max().item()
    if global_weight:
        assert s_shake < 0.5 * b_shake
        assert s_mover > 0.6 * b_mover
    else:
        assert (s_shake, s_mover) == (b_shake, b_mover)
