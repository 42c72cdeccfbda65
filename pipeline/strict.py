"""The one pydantic base of every config block, model-package record and event message.

Unknown keys are errors (a misspelt setting fails at start, on its YAML line, instead of being ignored) and
instances are immutable (a config read once is the config the daemon runs). A subclass adds to this config
(``arbitrary_types_allowed``, ``allow_inf_nan=False``...), never loosens it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
