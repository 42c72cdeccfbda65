"""The time-budgeted optimisation the three training loops share (video, temporal, audio): the learning rate
annealed over the run (``recipe._lr_at``), one optimiser step per batch (gradient clipping optional), a progress bar
in seconds. A run ends when its time budget or its passes over the data (``max_steps``) are spent, whichever first.
Needs torch."""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from tqdm import tqdm

from pipeline.models.recipe import _lr_at


class BudgetedSteps:
    """One training run's clock, schedule, step count and progress bar."""

    def __init__(
        self,
        opt: torch.optim.Optimizer,
        base_lr: float,
        seconds: float,
        *,
        max_steps: int | None,
        desc: str,
        progress: bool,
        clip: float | None = None,
    ) -> None:
        self.opt, self.base_lr, self.seconds = opt, base_lr, seconds
        self.max_steps, self.clip = max_steps, clip
        self.steps = 0
        self.start = time.monotonic()
        self.bar = tqdm(total=round(seconds), desc=desc, unit="s", disable=not progress, file=sys.stderr, leave=False)

    def fraction(self) -> float:
        """How far the run is, 0..1 and beyond: the time budget or the passes, whichever ends first."""
        done = (time.monotonic() - self.start) / self.seconds
        return max(done, self.steps / self.max_steps) if self.max_steps else done

    def next(self) -> bool:
        """Set the learning rate for the next step; False once the budget is spent."""
        frac = self.fraction()
        for g in self.opt.param_groups:
            g["lr"] = _lr_at(frac, self.base_lr)
        return frac < 1.0

    def step(self, model: torch.nn.Module, loss: torch.Tensor) -> float:
        """One optimiser step on ``loss``; its value."""
        self.opt.zero_grad()
        loss.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
        self.opt.step()
        self.steps += 1
        self.bar.update(round(time.monotonic() - self.start) - self.bar.n)
        return float(loss.item())

    def note(self, **values: Any) -> None:
        self.bar.set_postfix(**values)

    def close(self) -> None:
        self.bar.close()

    @property
    def stopped_by(self) -> str:
        """What ended the run: "epochs" (the passes) or "time"."""
        return "epochs" if self.max_steps and self.steps >= self.max_steps else "time"

    @property
    def elapsed_s(self) -> float:
        return round(time.monotonic() - self.start, 1)
