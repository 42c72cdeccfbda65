"""Opening and closing PyAV containers the same way wherever a stream is read (the camera's reader, the main
stream's demuxer)."""

from __future__ import annotations

import logging
from typing import Any

import av

from pipeline.sources.spec import SourceSpec

log = logging.getLogger(__name__)


def open_rtsp(spec: SourceSpec) -> Any:
    """An RTSP stream's container, opened with the spec's transport options and its open / read timeouts (PyAV's
    errors pass through: callers map them with ``open_error``)."""
    return av.open(spec.url, options=spec.rtsp_options(), timeout=(spec.open_timeout_s, spec.read_s))


def close_container(container: Any, safe_url: str) -> None:
    """Close a PyAV container if there is one; a failure to close (a broken stream) is logged, never raised over
    the error that ended the stream."""
    if container is None:
        return
    try:
        container.close()
    except Exception:  # noqa: BLE001 - closing a broken stream must not hide the original error
        log.debug("closing %s failed", safe_url, exc_info=True)
