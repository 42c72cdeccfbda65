"""Model packages and, for training only, the torch models behind them.

``pipeline.models.package`` (the package format, no torch) is what the runtime uses. ``video``, ``audio``,
``temporal`` (the torch models), ``export`` and training by stage (``recipe``, ``footage``, ``train_video``,
``train_temporal``, ``train_audio``, ``calibrate``, ``packaging``, ``train``) import torch and are only for
``edge train`` / export / the torch engine; importing this package loads none of them (nor pydantic: the names
below resolve on first use).
"""

from __future__ import annotations

from typing import Any

__all__ = ["AudioModelSpec", "ModelPackage", "TemporalModelSpec", "TensorSpec", "VideoModelSpec"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pipeline.models import package

        return getattr(package, name)
    raise AttributeError(f"module 'pipeline.models' has no attribute {name!r}")
