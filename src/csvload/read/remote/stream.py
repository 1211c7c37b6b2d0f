"""The body of a remote source as a raw binary stream: bytes as they come off the wire,
hashed as they pass (the run history's sha256 and --if-changed's digest: the recorder's
re-read of a local file cannot work for a URL), and a failure part-way through the body
turned into one line.  Nothing is buffered beyond the chunk at hand."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator

from csvload.errors import InputError
from csvload.read.remote.options import Fetched, RemoteOptions, UnchangedFeed


class WireStream(io.RawIOBase):
    """Reads `chunks` (an iterator of bytes); `errors` are the library's exceptions that
    mean the transfer broke, `reason` words one of them; `release` frees the connection."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        fetched: Fetched,
        options: RemoteOptions,
        errors: tuple[type[BaseException], ...],
        reason: Callable[[BaseException], str],
        release: Callable[[], None],
    ):
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._digest = hashlib.sha256()
        self._fetched, self._options = fetched, options
        self._errors, self._reason, self._release = errors, reason, release
        self._ended = False
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._pending:
            if self._ended:
                return 0
            try:
                data = next(self._chunks, b"")
            except self._errors as e:
                raise InputError(
                    f"{self._fetched.shown}: the transfer broke off after {self.count:,} bytes"
                    f" of the body ({self._reason(e)}); nothing was changed"
                ) from e
            if not data:
                self._end()
                return 0
            self._digest.update(data)
            self.count += len(data)
            self._pending = memoryview(data)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _end(self) -> None:
        self._ended = True
        fetched = self._fetched
        fetched.sha256 = self._digest.hexdigest()
        previous = self._options.previous
        if self._options.if_changed and previous is not None and previous.sha256 == fetched.sha256:
            raise UnchangedFeed(fetched, "the same content as the last import, by sha256")

    def close(self) -> None:
        if not self.closed:
            try:
                self._release()
            finally:
                super().close()
