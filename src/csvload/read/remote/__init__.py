"""Inputs that live elsewhere: `https://`, `http://` and `sftp://` sources, streamed into the
import with no copy on disk.

The one seam the rest of csvload uses is open_input(url, options) -> (stream, size,
Fetched): a binary stream of the body as it comes off the wire (gzip left for the reader to
detect by its magic bytes), the size the progress bar measures against (Content-Length, or
the remote file's size), and what was fetched (the redacted URL, ETag, Last-Modified, size
and mtime, and the body's sha256 once the stream has ended).  With --if-changed,
open_input() and the stream raise UnchangedFeed instead of delivering a body that is the
same as the last import's.

The modules: urls.py (what is a URL, and the URL as it may be shown: redaction),
options.py (RemoteOptions, Fetched, UnchangedFeed), stream.py (the body as a stream:
counting, hashing, one-line errors part-way), http.py (the standard library's http.client),
sftp.py (paramiko).  Both are imported only when a URL is read.
"""

from __future__ import annotations

from typing import BinaryIO

from csvload.read.remote.options import Fetched, Previous, RemoteOptions, UnchangedFeed
from csvload.read.remote.urls import is_remote, local_name, redact, shown

__all__ = [
    "Fetched", "Previous", "RemoteOptions", "UnchangedFeed", "is_remote", "local_name",
    "open_input", "redact", "shown",
]  # fmt: skip


def open_input(url: str, options: RemoteOptions | None) -> tuple[BinaryIO, int | None, Fetched]:
    """Open the URL for reading: (binary stream of the body, its size or None, Fetched).
    Raises InputError (one line, the URL redacted) or UnchangedFeed."""
    options = options or RemoteOptions()
    if url.lower().startswith("sftp://"):
        from csvload.read.remote.sftp import open_sftp

        return open_sftp(url, options)
    from csvload.read.remote.http import open_http

    return open_http(url, options)
