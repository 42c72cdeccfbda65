"""Inference backends behind one interface (see ``base``)."""

from pipeline.engines.base import Engine, EngineConfig, OrtEngineConfig, TorchEngineConfig, create_engine

__all__ = ["Engine", "EngineConfig", "OrtEngineConfig", "TorchEngineConfig", "create_engine"]
