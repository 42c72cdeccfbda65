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


def live_camera_refusal(url: str, command: str) -> str | None:
    """What ``edge <command>``, which reads recordings, says when given a live camera's URL (without its password);
    None for anything else. Reading a camera as if it were a file would last until it stops, and resolving its URL
    as a path would put the password into a "no such file" error."""
    from pipeline.redact import redact_url
    from pipeline.sources.spec import SourceKind, classify

    if classify(url) is not SourceKind.RTSP:
        return None
    return (
        f"{redact_url(url)} is a live camera: edge {command} reads recordings. Watch a camera with edge run -c "
        "site.yaml (configs/site.yaml shows one), or record some of it first (edge record <url> --minutes 5 "
        "--out clip.mkv)"
    )
