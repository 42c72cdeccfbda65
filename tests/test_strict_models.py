"""One strict pydantic base: every model of the config, the model package and the wire messages rejects unknown
keys and is immutable, because it derives from ``pipeline.strict.StrictModel``."""

from __future__ import annotations

import pydantic
import pytest

import alerts.schema
import edge.config
import pipeline.models.package
from pipeline.strict import StrictModel


def _ours() -> list[type[pydantic.BaseModel]]:
    assert edge.config and alerts.schema and pipeline.models.package  # imported for their models
    seen: list[type[pydantic.BaseModel]] = []
    todo = list(pydantic.BaseModel.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.__module__.split(".")[0] in ("pipeline", "edge", "alerts") and cls not in seen:
            seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen


def test_the_config_package_and_message_models_all_derive_from_the_strict_base():
    models = _ours()
    names = {m.__name__ for m in models}
    assert {
        "EdgeConfig",
        "CameraConfig",
        "AggregatorSettings",
        "OrtEngineConfig",
        "KafkaSettings",
        "TamperSettings",
        "ClipSettings",
        "EventMessage",
        "ModelPackage",
    } <= names
    loose = [m.__qualname__ for m in models if m is not StrictModel and not issubclass(m, StrictModel)]
    assert loose == []


@pytest.mark.parametrize("model", _ours(), ids=lambda m: m.__qualname__)
def test_each_one_forbids_unknown_keys_and_is_frozen(model):
    assert model.model_config.get("extra") == "forbid" and model.model_config.get("frozen") is True
