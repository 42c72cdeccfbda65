"""Lepton Edge streaming core: frames and clocks, sources, preprocessing, models, engines, aggregation.

No CLI lives here (see ``edge``); nothing here imports torch except ``pipeline.models.torch_*`` and
``pipeline.models.train``, which only training and export use.
"""

__version__ = "0.1.0"
