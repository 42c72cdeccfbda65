"""The temporal aggregator's settings, the daemon config's ``events:`` block (``AggregatorSettings``): thresholds,
durations, smoothing and how modalities fuse (``max``, ``weighted``, ``any_of``, ``all_of``, a union on ``type``),
each field with its bounds and description. ``pipeline.aggregator`` applies them to a camera's scores; its
docstring says what each one does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.frames import Modality
from pipeline.strict import StrictModel

if TYPE_CHECKING:
    from pipeline.aggregator import CameraAggregator

# Modality names the fusion config may name: the runner's modalities and those the scorers are growing into.
KNOWN_MODALITIES = frozenset({m.value for m in Modality} | {"temporal", "tampering"})


def _check_names(names: list[str] | dict[str, float]) -> None:
    unknown = sorted(set(names) - KNOWN_MODALITIES)
    if unknown:
        raise ValueError(
            f"unknown modality {', '.join(map(repr, unknown))} (known: {', '.join(sorted(KNOWN_MODALITIES))})"
        )


# What max fusion subtracts from a modality's calibrated score unless configured. The temporal model's scores count
# when they are 10x rarer than the others': its calibration rests on fewer, strongly overlapping windows (each score
# re-reads the last 2 s) and it strays further on footage unlike its training than the video model does. The
# measurements behind this default and the two below: docs/decisions/0002.
DEFAULT_DISCOUNT: dict[str, float] = {"temporal": 1.0}

# The fused score's smoothing unless configured: a time constant of 0.4 s (two frames at the models' 5 fps). A normal
# scene's worst patch or sound flickers from frame to frame (a lone frame at 3-4 among frames at 1), while an unusual
# object or sound stays for many; the average lowers the lone frames and barely delays the others (a score of 10
# reaches 3 within the frame, one of 5 a frame later). Longer holds a sound's end too long.
DEFAULT_SMOOTHING_S = 0.4

# The smoothing while a modality leads the fused score, where it differs from smoothing_s. An audio window's score
# is already the mean over its newest 0.4 s, and windows overlap: averaged again, a shot or a bark that crossed the
# threshold for a window or two stays under it. The measurement behind it: docs/decisions/0002.
DEFAULT_SMOOTHING_BY_LEAD: dict[str, float] = {"audio": 0.0}

# How long the smoothed score must stay at or above enter_threshold before an event opens unless configured: 0.6 s,
# three frames at 5 fps. With smoothing a lone frame at 10 holds the average above 3 for two frames (4.5, then 3.1);
# a shaking camera's lone frames would open events with less. An event is decided 0.2 s later for it.
DEFAULT_MIN_DURATION_S = 0.6


class MaxFusion(StrictModel):
    """The highest calibrated score among the fresh modalities, each less its modality's discount."""

    type: Literal["max"] = "max"
    discount: dict[str, Annotated[float, Field(ge=0, le=10)]] = Field(
        default_factory=lambda: dict(DEFAULT_DISCOUNT),
        description="Subtracted from a modality's calibrated score before the max: 1 = that modality counts when "
        "it is 10x rarer than the others (default: temporal 1; {} counts every modality as it is)",
    )

    @field_validator("discount")
    @classmethod
    def _valid(cls, discount: dict[str, float]) -> dict[str, float]:
        _check_names(discount)
        return discount


class WeightedFusion(StrictModel):
    """Weighted mean of the fresh modalities that have a weight (renormalised over those that are fresh)."""

    type: Literal["weighted"] = "weighted"
    weights: dict[str, Annotated[float, Field(ge=0, le=100)]] = Field(
        min_length=1,
        description="Weight per modality (video, audio, temporal, tampering); unlisted ones are ignored",
    )

    @field_validator("weights")
    @classmethod
    def _valid(cls, weights: dict[str, float]) -> dict[str, float]:
        _check_names(weights)
        if not any(w > 0 for w in weights.values()):
            raise ValueError("at least one weight must be positive")
        return weights


class AnyOfFusion(StrictModel):
    """The highest calibrated score among the fresh modalities of a set (the others are ignored)."""

    type: Literal["any_of"] = "any_of"
    modalities: list[str] = Field(min_length=1, description="The modalities that may open an event")

    @field_validator("modalities")
    @classmethod
    def _valid(cls, names: list[str]) -> list[str]:
        _check_names(names)
        return sorted(set(names))


class AllOfFusion(StrictModel):
    """The lowest calibrated score of a set of modalities: anomalous only when all of them are, and fresh."""

    type: Literal["all_of"] = "all_of"
    modalities: list[str] = Field(min_length=1, description="The modalities that must all be anomalous")

    @field_validator("modalities")
    @classmethod
    def _valid(cls, names: list[str]) -> list[str]:
        _check_names(names)
        return sorted(set(names))


Fusion = Annotated[MaxFusion | WeightedFusion | AnyOfFusion | AllOfFusion, Field(discriminator="type")]


class AggregatorSettings(StrictModel):
    """Per-camera event decisions; the daemon's config embeds this block as ``events:``."""

    fusion: Fusion = Field(
        default_factory=MaxFusion,
        description="How modalities combine: max, weighted, any_of, all_of "
        "(a mapping with type:, or just the type name)",
    )
    threshold: float = Field(
        default=3.0,
        gt=0,
        le=10,
        description="Calibrated score that counts as anomalous (3.0: exceeded "
        "by 1 in 1000 normal frames or windows); shorthand for enter and exit threshold",
    )
    enter_threshold: float | None = Field(
        default=None, gt=0, le=10, description="Smoothed score an event needs to open (default: threshold)"
    )
    exit_threshold: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="An open event is quiet below this (default: threshold); at most enter_threshold",
    )
    smoothing_s: float = Field(
        default=DEFAULT_SMOOTHING_S,
        ge=0,
        le=60,
        description="Time constant of the moving average of the fused score over stream time; 0: none",
    )
    smoothing_by_lead: dict[str, Annotated[float, Field(ge=0, le=60)]] = Field(
        default_factory=lambda: dict(DEFAULT_SMOOTHING_BY_LEAD),
        description="smoothing_s while that modality leads the fused score (default: audio 0, its window score "
        "is already a mean over 0.4 s; {}: smoothing_s whatever leads)",
    )
    min_duration_s: float = Field(
        default=DEFAULT_MIN_DURATION_S, ge=0, le=60, description="Span above enter_threshold before an event opens"
    )
    hold_s: float = Field(default=2.0, ge=0, le=600, description="Time below exit_threshold before an event is quiet")
    merge_gap_s: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="Bursts closer than this are one event (before it opens, and after it went quiet)",
    )
    cooldown_s: float = Field(
        default=0.0, ge=0, le=3600, description="After an event ended, no new one starts for this long"
    )
    max_duration_s: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description="An event this long ends (max_duration); a new one continues it if the anomaly persists",
    )
    stale_s: float = Field(default=1.5, gt=0, le=60, description="A modality's last score counts this long")
    update_peak_margin: float | None = Field(
        default=1.0,
        gt=0,
        le=100,
        description="Send an update when the peak rose this much above the last message's; null: never",
    )
    update_on_modality: bool = Field(default=True, description="Send an update when a modality joins the event")
    update_interval_s: float | None = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Send an update when no message about the event went out for this long; null: never",
    )

    @field_validator("smoothing_by_lead")
    @classmethod
    def _valid_leads(cls, smoothing: dict[str, float]) -> dict[str, float]:
        _check_names(smoothing)
        return smoothing

    @field_validator("fusion", mode="before")
    @classmethod
    def _fusion_shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> AggregatorSettings:
        if self.exit > self.enter:
            raise ValueError(f"exit_threshold ({self.exit:g}) must not exceed enter_threshold ({self.enter:g})")
        if self.max_duration_s <= self.min_duration_s:
            raise ValueError("max_duration_s must be longer than min_duration_s")
        return self

    @property
    def enter(self) -> float:
        """The threshold an event needs to open (``enter_threshold``, else ``threshold``)."""
        return self.enter_threshold if self.enter_threshold is not None else self.threshold

    @property
    def exit(self) -> float:
        """Below this an open event is quiet (``exit_threshold``, else ``threshold``)."""
        return self.exit_threshold if self.exit_threshold is not None else self.threshold

    def smoothing_for(self, lead: str | None) -> float:
        """The smoothing time constant while ``lead`` leads the fused score (None: nothing leads)."""
        return self.smoothing_by_lead.get(lead, self.smoothing_s) if lead is not None else self.smoothing_s

    @property
    def close_after_s(self) -> float:
        """Quiet time after which an open event ends."""
        return max(self.hold_s, self.merge_gap_s)

    def build(self, camera_id: str, *, new_id: Callable[[], str] | None = None) -> CameraAggregator:
        from pipeline.aggregator import CameraAggregator, _uuid

        return CameraAggregator(camera_id, self, new_id=new_id or _uuid)
