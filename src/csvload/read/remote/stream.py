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
    """Reads through `fill` (a readinto of the transfer); `errors` are the exceptions that
    mean the transfer broke, `reason` words one of them; `release` frees the connection;
    `expected`, when known, is how many bytes the body must have (Content-Length)."""

    def __init__(
        self,
        fill: Callable[[memoryview], int],
        fetched: Fetched,
        options: RemoteOptions,
        errors: tuple[type[BaseException], ...],
        reason: Callable[[BaseException], str],
        release: Callable[[], None],
        expected: int | None = None,
    ):
        self._fill = fill
        self._digest = hashlib.sha256()
        self._fetched, self._options = fetched, options
        self._errors, self._reason, self._release = errors, reason, release
        self._expected = expected
        self._ended = False
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._ended:
            return 0
        view = memoryview(buffer).cast("B")
        try:
            n = self._fill(view)
        except self._errors as e:
            raise self._broken(self._reason(e)) from e
        if not n:
            if self._expected is not None and self.count < self._expected:
                raise self._broken(
                    f"the server closed the connection before the {self._expected:,} bytes"
                    " its Content-Length announced"
                )
            self._end()
            return 0
        self._digest.update(view[:n])
        self.count += n
        return n

    def _broken(self, reason: str) -> InputError:
        return InputError(
            f"{self._fetched.shown}: the transfer broke off after {self.count:,} bytes of the"
            f" body ({reason}); nothing was changed"
        )

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


def chunk_filler(chunks: Iterator[bytes]) -> Callable[[memoryview], int]:
    """A readinto for WireStream over an iterator of byte strings."""
    pending = memoryview(b"")

    def fill(view: memoryview) -> int:
        nonlocal pending
        if not pending:
            pending = memoryview(next(chunks, b""))
        n = min(len(view), len(pending))
        view[:n] = pending[:n]
        pending = pending[n:]
        return n

    return fill
