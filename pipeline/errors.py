"""Exceptions raised by the streaming core.

    PipelineError
    ├── SourceError
    │   ├── SourceNotFoundError(SourceError, FileNotFoundError)   a file or image sequence that is not there
    │   ├── SourceFormatError(SourceError, ValueError)             not media, or nothing decodable in it
    │   ├── SourceConnectionError(SourceError, ConnectionError)    RTSP refused / timed out / lost
    │   └── SourceCrashedError(SourceError, ChildProcessError)     a camera's capture process died (SIGSEGV...)
    ├── ModelPackageError(PipelineError, ValueError)               missing or invalid model package
    └── EngineError(PipelineError, RuntimeError)                   a backend that cannot load or run

Leaf errors also inherit the builtin they resemble, so callers may catch either. Messages never carry camera
credentials: build them from ``pipeline.redact.redact_url``.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error raised by ``pipeline``."""


class SourceError(PipelineError):
    """A video/audio source could not be opened or read."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """The file or image sequence named by a source does not exist."""


class SourceFormatError(SourceError, ValueError):
    """The source exists but is not media we can decode."""


class SourceConnectionError(SourceError, ConnectionError):
    """A network source refused, timed out or went away."""


class SourceCrashedError(SourceError, ChildProcessError):
    """A camera's capture process (``isolation: process``) died: killed by a signal, or exited unasked."""


class ModelPackageError(PipelineError, ValueError):
    """A model package directory is missing, incomplete or inconsistent."""


class EngineError(PipelineError, RuntimeError):
    """An inference backend could not be loaded or failed to run."""
