"""Audio model: a small causal conv front end and a GRU over normalised log-mel frames. Needs torch.

The exported graph takes normalised log-mel frames ``mel`` (B, T, n_mels) float32 (per band: minus the training
mean, over the training std) and returns ``frame_err`` (B, T-1), one value per frame t+1 from frames <= t. The scorer
reduces a window's values to one raw score in numpy (``AudioModelSpec.score``).

Two heads:

- ``gauss`` (current): the GRU predicts each next frame as a Gaussian per band (mean and log-variance, trained by
  negative log-likelihood on normal sound). A frame's value is its energy *above* what normal sound explains,
  in standard units: the mean over bands of ``relu(x)`` (above the band's normal level) plus ``relu((x - mu) /
  sigma)`` (above what the GRU expected after the frames before it). One-sided, because an event adds sound to a
  scene: a quieter scene, or a band that drops, is not an anomaly, where a squared error counted it as one. The
  variance lets a busy scene (children playing) be surprised less by a burst than a steady one (an air
  conditioner). Frame-level anomalous sound detection in the DCASE Task 2 tradition (autoencoder or predictor
  error on log-mel frames, Koizumi et al. 2019; Dohi et al. 2023), with a Gaussian output as in mixture density /
  heteroscedastic regression (Bishop 1994).
- ``mse`` (older packages): the mean squared error of the predicted next frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("mse", "gauss")
_LOGVAR_MIN, _LOGVAR_MAX = -6.0, 4.0


class AudioPredictor(nn.Module):
    """The exported graph: ``mel`` (B, T, n_mels) → ``frame_err`` (B, T-1)."""

    def __init__(self, n_mels: int = 64, hidden: int = 64, kernel: int = 3, head: str = "mse") -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"audio head must be one of {HEADS}, got {head!r}")
        self.n_mels, self.hidden, self.kernel, self.head_kind = n_mels, hidden, kernel, head
        self.front = nn.Conv1d(n_mels, hidden, kernel)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_mels * (2 if head == "gauss" else 1))

    def _out(self, mel: torch.Tensor) -> torch.Tensor:
        h = F.pad(mel.transpose(1, 2), (self.kernel - 1, 0))  # causal: frame t sees t-k+1..t
        h = F.relu(self.front(h)).transpose(1, 2)
        y, _ = self.gru(h)
        out: torch.Tensor = self.head(y)
        return out

    def predict(self, mel: torch.Tensor) -> torch.Tensor:
        """Prediction (the mean) of frame t+1 at each position t, (B, T, n_mels)."""
        return self._out(mel)[..., : self.n_mels]

    def gaussian(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of frame t+1 at each position t, each (B, T, n_mels) (``gauss`` head)."""
        out = self._out(mel)
        return out[..., : self.n_mels], out[..., self.n_mels :].clamp(_LOGVAR_MIN, _LOGVAR_MAX)

    def loss(self, mel: torch.Tensor) -> torch.Tensor:
        """Training loss per frame t+1, (B, T-1): squared error (``mse``) or Gaussian NLL (``gauss``)."""
        if self.head_kind == "mse":
            return self.forward(mel)
        mean, logvar = self.gaussian(mel)
        r = mel[:, 1:] - mean[:, :-1]
        lv = logvar[:, :-1]
        return (0.5 * r * r * torch.exp(-lv) + 0.5 * lv).mean(dim=-1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if self.head_kind == "mse":
            pred = self.predict(mel)
            return ((pred[:, :-1] - mel[:, 1:]) ** 2).mean(dim=-1)
        mean, logvar = self.gaussian(mel)
        x = mel[:, 1:]
        surprise = F.relu((x - mean[:, :-1]) * torch.exp(-0.5 * logvar[:, :-1]))
        return F.relu(x).mean(dim=-1) + surprise.mean(dim=-1)

    def arch_config(self) -> dict[str, int | str]:
        return {"n_mels": self.n_mels, "hidden": self.hidden, "kernel": self.kernel, "head": self.head_kind}
