"""Lepton Edge streaming core: frames and clocks, sources, preprocessing, models, engines, aggregation.

No CLI lives here (see ``edge``). Only training and export import torch: ``pipeline.models.video``, ``.audio``,
``.export``, ``.train`` and the reference engine ``pipeline.engines.torch_ref``; the runtime path never does.
"""

import os

# numpy's OpenBLAS runs the log-mel matrix product on one busy-waiting thread per core, starving the decoders
# (edge bench shows it: benchmarks/README.md). Must precede numpy's import; a value the user set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
