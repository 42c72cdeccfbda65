"""Where the default model package lives: package data of ``pipeline.models`` (``pipeline/models/default/``).

The one definition every "default: the bundled package" uses (config, ``edge replay``, ``edge score``, ``edge
bench``). It is found with ``importlib.resources``, so it is the same folder in a source checkout and in an
installed wheel, whatever the working directory. ``make model`` retrains it in place.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pipeline.errors import ModelPackageError


def default_package_dir() -> Path:
    """The bundled default model package's directory (``model.json`` + ONNX graphs)."""
    root = resources.files("pipeline.models") / "default"
    # a wheel installs as plain files; a zipped install would need extracting, which the runtime does not do
    if not isinstance(root, Path):
        raise ModelPackageError(
            f"the bundled model package is not a directory on disk ({root}): install "
            "lepton-edge unzipped (pip install does)"
        )
    return root
