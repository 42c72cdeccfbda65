"""Exceptions of the daemon and its CLI.

    EdgeError
    ├── ConfigError(EdgeError, ValueError)      an invalid config file; carries every problem with YAML path + line
    └── StartupError(EdgeError, RuntimeError)   the daemon cannot start (no camera reachable, model unusable, ...)

The CLI prints one line per problem on stderr and exits non-zero; no traceback reaches a user for these.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error raised by ``edge``."""


class ConfigError(EdgeError, ValueError):
    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: invalid config:\n" + "\n".join(f"  {p}" for p in problems))


class StartupError(EdgeError, RuntimeError):
    """The daemon cannot start as configured."""
