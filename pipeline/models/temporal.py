"""Temporal model: a GRU over the video CNN's bottleneck embeddings that predicts the next embedding, scoring motion
that is unusual over seconds rather than from one frame to the next. Needs torch.

The video graph's second output ``embedding`` (B, C, gh, gw) is its bottleneck (what the U-Net encoded of the past
frames), pooled to a coarse grid: each cell describes what happens in its region of the frame. The temporal graph
takes the last ``window`` embeddings of one camera, ``embeddings`` (B, window, C, gh, gw) float32, oldest first, and
runs one small GRU per cell (shared weights, plus a learned per-cell offset: a camera is fixed, and "a walker here"
is normal on a path and not on a lawn) predicting each cell's next embedding from its past. It returns ``cell_err``
(B, gh, gw): the prediction error of the last ``score_steps`` steps, divided by each cell's typical error on normal
footage plus ``copy_weight`` x how much the cell's embedding changed over those steps (as in the video model: a big
object near the camera changes its cells a lot even when it moves normally), plus ``global_weight`` x the mean
change over all cells: when the camera shakes, every textured cell's embedding jitters at once, while something
unusual changes a few cells (``benchmarks/shake.py``). The scorer takes the worst cell as the raw score and as the
box, like the video model's worst patch.

With ``relative``, each cell's normalised embeddings are taken as changes from the window's first: what the GRU
follows is how a cell changes over the 2 s, not how it looks, so a new recording of the same view (other colours,
exposure, noise) does not shift every cell's input at once (docs/decisions/0001).

Stateless by design: a window of embeddings in, a score out. The runner keeps the last ``window`` embeddings per
camera, so batches may mix cameras freely and a restarted stream simply refills its window.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


class TemporalPredictor(nn.Module):
    """The exported graph: ``embeddings`` (B, window, C, gh, gw) → ``cell_err`` (B, gh, gw)."""

    # registered buffers
    mean: torch.Tensor
    std: torch.Tensor
    cell_scale: torch.Tensor

    def __init__(
        self,
        channels: int = 32,
        grid_h: int = 6,
        grid_w: int = 10,
        hidden: int = 32,
        window: int = 10,
        score_steps: int = 3,
        copy_weight: float = 0.0,
        global_weight: float = 0.0,
        relative: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= score_steps < window:
            raise ValueError("score_steps must be in 1..window-1")
        self.channels, self.grid_h, self.grid_w = channels, grid_h, grid_w
        self.hidden, self.window, self.score_steps = hidden, window, score_steps
        self.copy_weight = float(copy_weight)
        self.global_weight = float(global_weight)
        self.relative = bool(relative)
        self.inp = nn.Conv2d(channels, hidden, 1)  # per cell
        self.pos = nn.Parameter(torch.zeros(1, hidden, grid_h, grid_w))
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, channels)
        # per-channel statistics of the training embeddings, and each cell's typical error (fit after training)
        self.register_buffer("mean", torch.zeros(1, 1, channels, 1, 1))
        self.register_buffer("std", torch.ones(1, 1, channels, 1, 1))
        self.register_buffer("cell_scale", torch.ones(1, grid_h, grid_w))

    def step_errors(self, emb: torch.Tensor) -> torch.Tensor:
        """Squared error of each cell's prediction of steps 1..T-1, (B, T-1, gh, gw)."""
        c, h, w, t, k = self.channels, self.grid_h, self.grid_w, emb.shape[1], self.hidden
        x = (emb - self.mean) / self.std
        if self.relative:  # changes from the window's first embedding: a recording's look cancels
            x = x - x[:, :1]
        z = F.relu(self.inp(x.reshape(-1, c, h, w)) + self.pos)  # (B*T, k, h, w)
        seq = z.reshape(-1, t, k, h, w).permute(0, 3, 4, 1, 2).reshape(-1, t, k)  # (B*h*w, T, k)
        # exported as an unrolled GRU (MatMul/Sigmoid/Tanh, same weights and function): ONNX Runtime's GRU
        # kernel is slow for thousands of short sequences (one per cell), its MatMuls are not
        y = _unrolled_gru(self.gru, seq[:, :-1]) if torch.onnx.is_in_onnx_export() else self.gru(seq[:, :-1])[0]
        pred = self.head(y)  # (B*h*w, T-1, c)
        target = x.permute(0, 3, 4, 1, 2).reshape(-1, t, c)[:, 1:]
        err = ((pred - target) ** 2).mean(dim=-1)  # (B*h*w, T-1)
        return err.reshape(-1, h, w, t - 1).permute(0, 3, 1, 2)

    def cell_errors(self, emb: torch.Tensor) -> torch.Tensor:
        """Mean error of the last ``score_steps`` steps before the per-cell scaling, (B, gh, gw)."""
        return self.step_errors(emb)[:, -self.score_steps :].mean(dim=1)

    def change(self, emb: torch.Tensor) -> torch.Tensor:
        """Mean squared step-to-step change of each cell's normalised embedding over the scored steps, (B, gh, gw)."""
        x = (emb[:, -self.score_steps - 1 :] - self.mean) / self.std
        return ((x[:, 1:] - x[:, :-1]) ** 2).mean(dim=2).mean(dim=1)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        if self.copy_weight <= 0 and self.global_weight <= 0:
            return self.cell_errors(emb) / self.cell_scale
        change = self.change(emb)
        level = self.cell_scale + self.copy_weight * change
        if self.global_weight > 0:
            level = level + self.global_weight * change.mean(dim=(1, 2), keepdim=True)
        return self.cell_errors(emb) / level

    @torch.no_grad()
    def fit_scale(self, errors: torch.Tensor, quantile: float = 0.99, floor: float = 0.1) -> None:
        """``cell_scale`` from unscaled cell errors of normal footage, (N, gh, gw): each cell's ``quantile``
        plus ``floor`` x the median cell (a cell where nothing ever happens does not turn noise into alarms)."""
        q = torch.quantile(errors.reshape(errors.shape[0], -1).double(), quantile, dim=0).float()
        q = q.reshape(errors.shape[1:])
        self.cell_scale.copy_((q + floor * q.median() + 1e-8)[None])

    def arch_config(self) -> dict[str, int | float]:
        return {
            "channels": self.channels,
            "grid_h": self.grid_h,
            "grid_w": self.grid_w,
            "hidden": self.hidden,
            "window": self.window,
            "score_steps": self.score_steps,
            "copy_weight": self.copy_weight,
            "global_weight": self.global_weight,
            "relative": self.relative,
        }


def _unrolled_gru(gru: nn.GRU, seq: torch.Tensor) -> torch.Tensor:
    """``gru(seq)[0]`` for a one-layer, batch-first GRU with a zero initial state, step by step (torch's equations:
    gates r, z, n in that order in the stacked weights)."""
    # parameters nn.GRU registers by name (to mypy, Module.__getattr__'s Tensor | Module)
    w_ih, w_hh = cast(torch.Tensor, gru.weight_ih_l0), cast(torch.Tensor, gru.weight_hh_l0)
    b_ih, b_hh = cast(torch.Tensor, gru.bias_ih_l0), cast(torch.Tensor, gru.bias_hh_l0)
    gates_in = seq @ w_ih.t() + b_ih  # (N, T, 3k): all input projections in one MatMul
    k = gru.hidden_size
    h = seq[:, 0, :k] * 0.0  # (N, k) zeros with the dynamic batch dimension
    out = []
    for t in range(seq.shape[1]):
        gi = gates_in[:, t]
        gh = h @ w_hh.t() + b_hh
        r = torch.sigmoid(gi[:, :k] + gh[:, :k])
        z = torch.sigmoid(gi[:, k : 2 * k] + gh[:, k : 2 * k])
        n = torch.tanh(gi[:, 2 * k :] + r * gh[:, 2 * k :])
        h = (1 - z) * n + z * h
        out.append(h)
    return torch.stack(out, dim=1)
