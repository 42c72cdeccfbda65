"""Audio model: next-frame prediction of log-mel features with a small causal conv front end and a GRU. Needs
torch.

The exported graph takes normalised log-mel frames ``mel`` (B, T, n_mels) float32 and returns ``frame_err``
(B, T-1): the mean squared error of the prediction of frame t+1 from frames ≤ t. The scorer reduces a window's
errors to one raw score (mean of the top-k, after the recurrent warm-up), in numpy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AudioPredictor(nn.Module):
    """The exported graph: ``mel`` (B, T, n_mels) → ``frame_err`` (B, T-1)."""

    def __init__(self, n_mels: int = 64, hidden: int = 64, kernel: int = 3) -> None:
        super().__init__()
        self.n_mels, self.hidden, self.kernel = n_mels, hidden, kernel
        self.front = nn.Conv1d(n_mels, hidden, kernel)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_mels)

    def predict(self, mel: torch.Tensor) -> torch.Tensor:
        """Prediction of frame t+1 at each position t, (B, T, n_mels)."""
        h = F.pad(mel.transpose(1, 2), (self.kernel - 1, 0))  # causal: frame t sees t-k+1..t
        h = F.relu(self.front(h)).transpose(1, 2)
        y, _ = self.gru(h)
        return self.head(y)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        pred = self.predict(mel)
        return ((pred[:, :-1] - mel[:, 1:]) ** 2).mean(dim=-1)

    def arch_config(self) -> dict[str, int]:
        return {"n_mels": self.n_mels, "hidden": self.hidden, "kernel": self.kernel}
