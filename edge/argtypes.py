"""Argument types the ``edge`` commands share: a bad number is a usage error (exit 2) with the value named, not a
run that silently does nothing (``--minutes -1`` trained zero steps and wrote a package)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port to listen on: 1-65535, or 0 for any free one."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0-65535, got {text!r}")
    return value
