"""Inference backends behind one interface (``interface.Engine``), selected by config (``base``).

Imports are lazy (PEP 562): ``import pipeline.engines.torch_ref`` does not pull in pydantic or the other backends,
so a backend can be used on a machine that has only its runtime.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Engine",
    "EngineConfig",
    "OrtEngineConfig",
    "TensorRTEngineConfig",
    "TorchEngineConfig",
    "create_engine",
]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from pipeline.engines.interface import Engine

        return Engine
    if name in __all__:
        from pipeline.engines import base

        return getattr(base, name)
    raise AttributeError(f"module 'pipeline.engines' has no attribute {name!r}")
