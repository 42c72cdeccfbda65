"""Sources: where video frames and audio windows come from (PyAV for files, image sequences and RTSP).

``MediaReader`` decodes one source; ``CaptureWorker`` runs one reader on its own thread with reconnects and a
bounded queue (``ProcessReader`` moves a camera's reader into a child process: ``isolation: process``);
``read_media`` is the plain iterator used by training and ``edge score``.
"""

from pipeline.sources.reader import MediaReader, read_media
from pipeline.sources.spec import SourceKind, SourceSpec, classify

__all__ = ["MediaReader", "SourceKind", "SourceSpec", "classify", "read_media"]
