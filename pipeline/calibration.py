"""Calibration: raw model scores → how surprising they are on normal footage, comparable across cameras and
models.

A ``Calibration`` is fitted on raw scores of held-out *normal* data (never seen in training). It keeps a
quantile table of the body of the distribution and an exponential tail fitted (maximum likelihood) on the top
``tail_fraction`` of the scores, and maps a raw score ``r`` to

    calibrated(r) = -log10(P_normal(raw' >= r))        clipped to [0, max_score] (100 for new fits),
                                                       above 10 compressed to 10 + log10(1 + excess)

so a calibrated threshold of 3.0 means "1 in 1000 normal frames or windows score this high". The quantile
table alone could not say anything beyond ``1 / n`` of the sample; the tail extrapolates past it. The map is
monotonic non-decreasing. numpy only; ``to_dict``/``from_dict`` give the form stored in ``model.json``.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

_EPS = 1e-12
# Where calibrated scores stop, for new fits: far enough that nothing real reaches it, so scores above the tail's
# reach keep their order instead of tying at a ceiling (packages fitted before keep theirs: 10). Above
# COMPRESS_ABOVE (1 in 10^10, far beyond what any held-out sample says) a score only orders: it is compressed to
# COMPRESS_ABOVE + log10(1 + excess), so a ceiling of 100 reads 11.96 and an event's peak does not climb by tens.
MAX_SCORE = 100.0
COMPRESS_ABOVE = 10.0
_FEW = 4  # batches up to this size are calibrated one Python float at a time (same bits, fewer calls)


class Calibration:
    """Survival-function calibration of raw scores (see module docstring)."""

    def __init__(
        self,
        levels: np.ndarray,
        values: np.ndarray,
        tail_scale: float,
        n_samples: int,
        max_score: float = 10.0,
    ) -> None:
        levels = np.asarray(levels, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if levels.ndim != 1 or levels.shape != values.shape or len(levels) < 2:
            raise ValueError("calibration needs matching 1-D quantile levels and values (at least 2)")
        if np.any(np.diff(levels) <= 0) or levels[0] < 0 or levels[-1] >= 1:
            raise ValueError("calibration quantile levels must increase strictly within [0, 1)")
        if np.any(np.diff(values) < 0) or not np.all(np.isfinite(values)):
            raise ValueError("calibration quantile values must be finite and non-decreasing")
        if not (tail_scale > 0 and math.isfinite(tail_scale)):
            raise ValueError("calibration tail scale must be a positive number")
        self.levels = levels
        self.values = values
        self.tail_scale = float(tail_scale)
        self.n_samples = int(n_samples)
        self.max_score = float(max_score)
        # np.interp needs strictly increasing abscissae: ties (a discrete score) are nudged apart by a hair.
        span = max(float(values[-1] - values[0]), 1.0)
        self._xp = values + np.arange(len(values)) * (span * 1e-12)
        # the same tables as Python floats, for the few-scores path of ``calibrate``
        self._xp_list: list[float] = self._xp.tolist()
        self._levels_list: list[float] = levels.tolist()
        self._tail_threshold = self.tail_threshold
        self._tail_probability = self.tail_probability

    @property
    def tail_threshold(self) -> float:
        """Raw score above which the exponential tail applies."""
        return float(self.values[-1])

    @property
    def tail_probability(self) -> float:
        """P_normal(raw >= tail_threshold)."""
        return float(1.0 - self.levels[-1])

    @classmethod
    def fit(
        cls,
        raw: np.ndarray,
        *,
        tail_fraction: float = 0.1,
        n_quantiles: int = 91,
        max_score: float = MAX_SCORE,
    ) -> Calibration:
        """Fit on raw scores of held-out normal data (at least 20 finite values)."""
        x = np.asarray(raw, dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        if x.size < 20:
            raise ValueError(f"calibration needs at least 20 normal scores, got {x.size}")
        if not 0.0 < tail_fraction < 0.5:
            raise ValueError("tail_fraction must be in (0, 0.5)")
        levels = np.linspace(0.0, 1.0 - tail_fraction, n_quantiles)
        values = np.quantile(x, levels)
        u = values[-1]
        excess = x[x > u] - u
        scale = float(excess.mean()) if excess.size else 0.0
        if scale <= _EPS:
            # All of the tail sits on the threshold (a discrete or constant score): a tiny scale makes
            # anything above it very surprising, which is the honest reading of such data.
            scale = max(float(u - values[0]) * 1e-3, abs(float(u)) * 1e-6, _EPS)
        return cls(levels, values, scale, x.size, max_score)

    def survival(self, raw: np.ndarray | float) -> np.ndarray:
        """P_normal(raw' >= raw) for each raw score."""
        r = np.asarray(raw, dtype=np.float64)
        body = 1.0 - np.interp(r, self._xp, self.levels, left=0.0, right=self.levels[-1])
        excess = np.maximum(r - self.tail_threshold, 0.0)
        tail = self.tail_probability * np.exp(-excess / self.tail_scale)
        s = np.where(r > self.tail_threshold, tail, body)
        return np.where(np.isnan(r), 1.0, s)

    def calibrate(self, raw: np.ndarray | float) -> np.ndarray:
        """Calibrated scores (float32, same shape as ``raw``): -log10 of the normal survival, in [0,
        max_score]."""
        if isinstance(raw, np.ndarray) and raw.ndim == 1 and len(raw) <= _FEW:
            return np.array([self._calibrate_one(r) for r in raw.tolist()], dtype=np.float32)
        s = self.survival(raw)
        with np.errstate(divide="ignore"):
            c = np.clip(-np.log10(np.maximum(s, 0.0)), 0.0, self.max_score)
            over = c > COMPRESS_ABOVE
            if over.any():
                c = np.where(over, COMPRESS_ABOVE + np.log10(1.0 + np.maximum(c - COMPRESS_ABOVE, 0.0)), c)
        return np.asarray(c).astype(np.float32)

    def _calibrate_one(self, r: float) -> float:
        """``calibrate`` of one score in Python floats, step for step the same IEEE operations as the array path
        (``np.interp``'s formula; numpy's own exp and log10, whose SIMD results may differ from ``math``'s), so
        bitwise the same result: the runtime calibrates batches of one or two, where ~20 numpy calls on tiny
        arrays cost more than the scoring thread should hold the GIL for."""
        if r != r:  # NaN
            s = 1.0
        elif r > self._tail_threshold:
            s = self._tail_probability * float(np.exp(-(r - self._tail_threshold) / self.tail_scale))
        else:
            xp = self._xp_list
            j = bisect.bisect_right(xp, r) - 1
            if j < 0:
                s = 1.0  # left of the table: interp gives 0.0
            elif j >= len(xp) - 1 or xp[j] == r:
                s = 1.0 - self._levels_list[j]
            else:
                fp = self._levels_list
                slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
                s = 1.0 - (slope * (r - xp[j]) + fp[j])
        c = self.max_score if s <= 0.0 else -float(np.log10(s))  # -log10(0) = inf, clipped
        # np.clip's order: a -0.0 stays -0.0
        c = 0.0 if c < 0.0 else min(c, self.max_score)
        if c > COMPRESS_ABOVE:
            c = COMPRESS_ABOVE + float(np.log10(1.0 + (c - COMPRESS_ABOVE)))
        return c

    def raw_threshold(self, calibrated: float) -> float:
        """The raw score whose calibrated value is ``calibrated`` (inverse map; for thresholds in reports)."""
        c = float(calibrated)
        if c > COMPRESS_ABOVE:
            c = COMPRESS_ABOVE + 10.0 ** (c - COMPRESS_ABOVE) - 1.0
        p = 10.0 ** (-c)
        if p <= self.tail_probability:
            return self.tail_threshold + self.tail_scale * math.log(self.tail_probability / p)
        return float(np.interp(1.0 - p, self.levels, self.values))

    def describe(self) -> str:
        return (
            f"quantiles+exp-tail n={self.n_samples} tail>{self.tail_threshold:.4g} "
            f"(p={self.tail_probability:.3g}, scale={self.tail_scale:.4g})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "quantile+exponential-tail",
            "levels": [float(v) for v in self.levels],
            "values": [float(v) for v in self.values],
            "tail_scale": self.tail_scale,
            "n_samples": self.n_samples,
            "max_score": self.max_score,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        if data.get("method") != "quantile+exponential-tail":
            raise ValueError(f"unknown calibration method {data.get('method')!r}")
        unknown = set(data) - {"method", "levels", "values", "tail_scale", "n_samples", "max_score"}
        if unknown:
            raise ValueError(f"unknown calibration fields: {', '.join(sorted(unknown))}")
        return cls(
            np.asarray(data["levels"], dtype=np.float64),
            np.asarray(data["values"], dtype=np.float64),
            float(data["tail_scale"]),
            int(data["n_samples"]),
            float(data.get("max_score", 10.0)),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calibration):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Calibration({self.describe()})"
