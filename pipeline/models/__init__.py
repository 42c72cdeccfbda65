"""Model packages and, for training only, the torch models behind them.

``pipeline.models.package`` (the package format, no torch) is what the runtime uses. ``video``, ``audio``,
``export`` and ``train`` import torch and are only for ``edge train`` / export; importing this package does
not load them.
"""

from pipeline.models.package import AudioModelSpec, ModelPackage, TensorSpec, VideoModelSpec

__all__ = ["AudioModelSpec", "ModelPackage", "TensorSpec", "VideoModelSpec"]
