"""Video model: future-frame prediction (after Liu et al., CVPR 2018) on small luma frames. Needs torch.

The exported graph takes the last ``context`` frames plus the frame being scored, ``frames`` (B, context+1, H,
W) uint8, and returns ``patch_err`` (B, gh, gw): the mean squared error between the predicted and the actual
newest frame over ``patch`` x ``patch`` squares every ``stride`` pixels. The scorer takes the mean of the worst
patches (``VideoModelSpec.pool_fraction``; the worst alone in older packages) as the raw score and the worst as the
box, so an unusual object is not averaged away by a large normal scene. With
``embedding`` on, a second output ``embedding`` (B, 2*channels, H/16, W/16) is the bottleneck pooled 2x2: the
input of the temporal model (``pipeline.models.temporal``).

Robustness, all causal (nothing a live stream could not do):
- each frame has its own spatial mean removed before prediction, so slow (and sudden global) lighting changes
  barely move the error;
- the comparison happens at half resolution (2x2 mean), and the patch mean averages sensor noise down further;
- the network predicts a correction to the newest past frame, so "nothing moves" costs nothing to learn and
  capacity goes into the scene's normal motion;
- each patch's error is divided by a normal level (``patch_scale``; ``edge train`` fits one level for the whole
  picture, see ``fit_patch_scale`` and docs/decisions/0001-scores-that-hold-on-real-data.md) plus ``copy_weight`` x
  the error of simply repeating the newest past frame there (0 in new packages; older ones use 0.15);
- with ``shake_weight``, a shaking camera is not an anomaly: the graph measures the picture's move from the newest
  past frame (``global_shift``) and adds ``shake_weight`` x (move in pixels)^2 x the patch's gradient energy (the
  error such a move makes there) to the denominator: nothing on a steady camera, edges discounted while it shakes,
  flat ground (where a walker or a car shows) barely affected (``benchmarks/shake.py``).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

# The decoder half of the U-Net. "unet": 3x3 convolutions on the concatenated skips at 1/4 and 1/2 resolution and a
# 3x3 output (older packages). "light" (the default of ``edge train``): at 1/4 a 1x1 mix then a 3x3 convolution to
# half the channels, at 1/2 a 1x1 mix then a depthwise 3x3, a 1x1 output: about a third of the cost for the same
# quality at equal steps, so more steps in the same time budget (docs/models.md).
DECODERS = ("unet", "light")

# Luma in [0, 1] after mean removal has a spread of ~0.2; scaled up, errors and gradients are O(1).
_SCALE = 4.0


# The largest whole-picture move ``global_shift`` reports, in half-resolution pixels (2 model pixels: 10 px of a 720p
# frame); a larger one is reported as this (the shake term then still discounts edges, by less than it explains).
MAX_SHIFT = 2.0


def _lk_solve(grad: torch.Tensor, change: torch.Tensor, robust: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The translation (dx, dy) in pixels with ``change ~ dx * gx + dy * gy``, for ``grad`` (B, 2, N) (gx, gy) and
    ``change`` (B, 1, N), in the model's units (``VideoPredictor.normalise``: 1 = 64 luma levels). Pixels whose
    change the gradient cannot explain (something moving) are down-weighted by ``1 / (1 + (change / robust)^2)``
    (0.1: ~6 levels) so a walker does not drag the whole picture along. All six weighted sums come from one matrix
    product."""
    r = change * (1.0 / robust)
    w = 1.0 / (1.0 + r * r)
    g = torch.cat([grad, change], dim=1)  # (B, 3, N)
    s = (g * w) @ g.transpose(1, 2)  # (B, 3, 3): the weighted sums of products of gx, gy and the change
    ridge = w.sum(dim=(1, 2)) * 1e-3  # a flat picture gives no shift rather than a division by ~0
    sxx, syy, sxy = s[:, 0, 0] + ridge, s[:, 1, 1] + ridge, s[:, 0, 1]
    bx, by = s[:, 0, 2], s[:, 1, 2]
    det = sxx * syy - sxy * sxy
    return (syy * bx - sxy * by) / det, (sxx * by - sxy * bx) / det


def global_shift(p: torch.Tensor, n: torch.Tensor, robust: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole-picture translation (dx, dy) in pixels that best maps ``p`` onto ``n`` (B, 1, h, w), i.e. ``n(x) ~
    p(x + d)``, clamped to ``MAX_SHIFT``: robust Lucas-Kanade on the 2x2-pooled maps, then a second pass on what
    the first move leaves unexplained (re-weighted by that residual, to first order: the same gradients, no
    resampling of the picture: a second step that resampled the picture by the first move measured the same
    moves within a few hundredths of a pixel on ``benchmarks/shake.py``'s clips, at a higher cost)."""
    pp, pn = F.avg_pool2d(p, 2), F.avg_pool2d(n, 2)
    b = pp.shape[0]
    gx = (pp[..., 1:-1, 2:] - pp[..., 1:-1, :-2]) * 0.5  # central differences at the interior pixels
    gy = (pp[..., 2:, 1:-1] - pp[..., :-2, 1:-1]) * 0.5
    grad = torch.cat([gx, gy], dim=1).reshape(b, 2, -1)
    change = (pn[..., 1:-1, 1:-1] - pp[..., 1:-1, 1:-1]).reshape(b, 1, -1)
    dx, dy = _lk_solve(grad, change, robust)
    rest = change - dx.view(-1, 1, 1) * grad[:, :1] - dy.view(-1, 1, 1) * grad[:, 1:]
    fx, fy = _lk_solve(grad, rest, robust)
    return (2 * (dx + fx)).clamp(-MAX_SHIFT, MAX_SHIFT), (2 * (dy + fy)).clamp(-MAX_SHIFT, MAX_SHIFT)


def shake_error(last: torch.Tensor, now: torch.Tensor) -> torch.Tensor:
    """The squared error a whole-picture move from ``last`` to ``now`` (B, 1, h, w) makes at each pixel, to first
    order: (measured move)^2 x the gradient energy of ``last`` there, (B, 1, h, w)."""
    dx, dy = global_shift(last, now)
    gx = F.pad((last[..., :, 2:] - last[..., :, :-2]), (1, 1, 0, 0))  # twice the central differences
    gy = F.pad((last[..., 2:, :] - last[..., :-2, :]), (0, 0, 1, 1))
    return (gx * gx + gy * gy) * (0.25 * (dx * dx + dy * dy)).view(-1, 1, 1, 1)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True))


class VideoPredictor(nn.Module):
    """The exported graph: ``frames`` (B, context+1, H, W) uint8 or float in [0, 255] → ``patch_err`` (B, gh,
    gw)."""

    patch_scale: torch.Tensor  # a registered buffer, (1, gh, gw)

    def __init__(
        self,
        context: int = 4,
        channels: int = 16,
        patch: int = 16,
        stride: int = 8,
        height: int = 96,
        width: int = 160,
        embedding: int = 0,
        copy_weight: float = 0.0,
        decoder: str = "unet",
        shake_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if patch % 2 or stride % 2:
            raise ValueError("patch and stride must be even (the error map is at half resolution)")
        if height % 16 or width % 16:
            raise ValueError("height and width must be multiples of 16 (three stride-2 stages, 2x2 embedding)")
        self.context, self.patch, self.stride, self.height, self.width = context, patch, stride, height, width
        self.embedding = int(bool(embedding))
        self.copy_weight = float(copy_weight)
        self.shake_weight = float(shake_weight)
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        self.decoder = decoder
        c = channels
        # Learned per-location embeddings: a camera is fixed, and "someone walking here" is normal on a path
        # and abnormal on a lawn. Convolutions alone are translation-equivariant and would predict both
        # equally well.
        self.pos2 = nn.Parameter(torch.zeros(1, 2 * c, height // 4, width // 4))
        self.pos3 = nn.Parameter(torch.zeros(1, 2 * c, height // 8, width // 8))
        # Typical error of each patch on normal footage (set by ``fit_patch_scale`` after training). People
        # near the camera are large and make large errors, a scooter by the far facade is a few pixels:
        # dividing by each patch's own normal level lets the worst patch be the most *unusual* one, not the
        # nearest one.
        gh, gw = grid_shape(height, width, patch, stride)
        self.register_buffer("patch_scale", torch.ones(1, gh, gw))
        self.enc1 = _conv(context, c, stride=2)  # 1/2
        self.enc2 = _conv(c, 2 * c, stride=2)  # 1/4
        self.enc3 = nn.Sequential(_conv(2 * c, 2 * c, stride=2), _conv(2 * c, 2 * c))  # 1/8
        self.dec2: nn.Module
        self.dec1: nn.Module
        if decoder == "unet":
            self.dec2 = _conv(4 * c, 2 * c)  # 1/4, after the skip from enc2
            self.dec1 = _conv(3 * c, c)  # 1/2, after the skip from enc1
            self.out = nn.Conv2d(c, 1, 3, padding=1)
        else:  # "light": the same stages, cheaper convolutions (see DECODERS)
            self.dec2 = nn.Sequential(nn.Conv2d(4 * c, 2 * c, 1), nn.ReLU(inplace=True), _conv(2 * c, c))
            self.dec1 = nn.Sequential(
                nn.Conv2d(2 * c, c, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1, groups=c),
                nn.ReLU(inplace=True),
            )
            self.out = nn.Conv2d(c, 1, 1)
        nn.init.zeros_(self.out.weight)  # start as "copy the newest frame": the frame-difference baseline
        if self.out.bias is not None:  # always: Conv2d's bias defaults to on
            nn.init.zeros_(self.out.bias)

    @staticmethod
    def normalise(frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(torch.float32) * (_SCALE / 255.0)
        return x - x.mean(dim=(2, 3), keepdim=True)

    def _run(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(squared prediction error at half resolution (B, 1, H/2, W/2), bottleneck (B, 2c, H/8, W/8))."""
        pred, _, now, e3 = self._predict(frames)
        return (pred - now) ** 2, e3

    def _predict(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The predicted newest frame, the newest past frame and the actual newest frame, all at half resolution (B,
        1, H/2, W/2), and the bottleneck (B, 2c, H/8, W/8)."""
        x = self.normalise(frames)
        past, target = x[:, : self.context], x[:, self.context :]
        e1 = self.enc1(past)
        e2 = self.enc2(e1) + self.pos2
        e3 = self.enc3(e2) + self.pos3
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0, mode="nearest"), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1], dim=1))
        last, now = F.avg_pool2d(past[:, -1:], 2), F.avg_pool2d(target, 2)
        return last + self.out(d1), last, now, e3

    def error_map(self, frames: torch.Tensor) -> torch.Tensor:
        """Squared prediction error at half resolution, (B, 1, H/2, W/2)."""
        return self._run(frames)[0]

    def _patches(self, error_map: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(error_map, self.patch // 2, stride=self.stride // 2)[:, 0]

    def patch_errors(self, frames: torch.Tensor) -> torch.Tensor:
        """Mean error per patch before the per-patch scaling, (B, gh, gw)."""
        return self._patches(self.error_map(frames))

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """The bottleneck pooled 2x2, (B, 2c, H/16, W/16): what the temporal model follows over time."""
        return F.avg_pool2d(self._run(frames)[1], 2)

    def forward(self, frames: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        # the copy and shake terms belong to scoring only: training and the patch statistics use ``_run``
        pred, last, now, e3 = self._predict(frames)
        level = self.patch_scale
        expected = None  # the error map's part of each patch's level, pooled once (patch means are linear)
        if self.copy_weight > 0:
            expected = self.copy_weight * (last - now) ** 2
        if self.shake_weight > 0:
            shake = self.shake_weight * shake_error(last, now)
            expected = shake if expected is None else expected + shake
        if expected is not None:
            level = level + self._patches(expected)
        scaled = self._patches((pred - now) ** 2) / level
        if self.embedding:
            return scaled, F.avg_pool2d(e3, 2)
        return scaled

    @torch.no_grad()
    def fit_patch_scale(
        self,
        errors: torch.Tensor,
        quantile: float = 0.997,
        row_floor: float = 0.5,
        floor: float = 0.05,
        uniform: bool = False,
    ) -> None:
        """Set ``patch_scale`` from unscaled patch errors of normal training footage, (N, gh, gw).

        Each patch's ``quantile`` (0.997: close to the most a patch saw on normal footage) plus two floors:
        ``row_floor`` x the upper quartile of its row (rows are distances from the camera, so a patch that saw
        nobody in training still expects what people at that distance do), and ``floor`` x the median patch (a
        region where nothing ever moves does not turn sensor noise into huge scores).

        ``uniform``: one level for every patch, the median patch's ``quantile`` (the unit of the scores, no per-patch
        normalisation; what ``edge train`` fits). What each patch, or each row, saw in a few minutes of training is a
        noisy estimate of its normal level: divided by it, a spot that was quiet in training turns a normal walker
        or a new recording's noise into an outlier (see docs/decisions/0001-scores-that-hold-on-real-data.md)."""
        q = torch.quantile(errors.reshape(errors.shape[0], -1).double(), quantile, dim=0).float()
        q = q.reshape(errors.shape[1:])
        if uniform:
            self.patch_scale.copy_(torch.full_like(q, float(q.median()) + 1e-8)[None])
            return
        row = torch.quantile(q, 0.75, dim=1, keepdim=True)
        self.patch_scale.copy_((q + row_floor * row + floor * q.median() + 1e-8)[None])

    def arch_config(self) -> dict[str, int | float | str]:
        return {
            "context": self.context,
            "channels": cast(nn.Conv2d, self.enc1[0]).out_channels,
            "patch": self.patch,
            "stride": self.stride,
            "height": self.height,
            "width": self.width,
            "embedding": self.embedding,
            "copy_weight": self.copy_weight,
            "decoder": self.decoder,
            "shake_weight": self.shake_weight,
        }


def grid_shape(height: int, width: int, patch: int, stride: int) -> tuple[int, int]:
    """(gh, gw) of ``patch_err`` for a frame of ``height`` x ``width``."""
    return (height - patch) // stride + 1, (width - patch) // stride + 1
