"""Lepton Edge streaming core: frames and clocks, sources, preprocessing, models, engines, aggregation.

No CLI lives here (see ``edge``). Only training and export import torch: ``pipeline.models.video``, ``.audio``,
``.export``, ``.train`` and the reference engine ``pipeline.engines.torch_ref``; the runtime path never does.
"""

__version__ = "0.1.0"
