"""The storage driver protocol.

Drivers move opaque bytes under slash-separated keys; everything about digests, repositories
and visibility lives in ``dockyard.registry``. Methods are synchronous and are called from a
thread pool, which suits both local files and (later) S3-style SDKs. The protocol is kept this
small on purpose, like Distribution's StorageDriver: a new backend should be an afternoon.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol


class Appender(Protocol):
    """An open upload: takes batches of received pieces in order."""

    def write(self, chunks: list[bytes]) -> None: ...

    def close(self) -> None: ...


class StorageDriver(Protocol):
    def size(self, key: str) -> int | None:
        """Size in bytes, or None when the key does not exist."""

    def reader(self, key: str, offset: int = 0) -> BinaryIO:
        """A binary stream positioned at ``offset``; FileNotFoundError when missing."""

    def local_path(self, key: str) -> Path | None:
        """A filesystem path for zero-copy sends (sendfile), or None for remote drivers."""

    def appender(self, key: str) -> Appender:
        """Open ``key`` for appending, creating it; used for upload sessions only."""

    def truncate(self, key: str, size: int) -> None:
        """Cut an upload back to ``size`` bytes (recovery after a crash)."""

    def commit(self, src: str, dst: str) -> bool:
        """Durably move ``src`` to ``dst`` (fsync, atomic rename). False if ``dst`` already
        existed, in which case ``src`` is discarded: content-addressed keys hold equal bytes."""

    def put(self, key: str, data: bytes, sync: bool = True) -> None:
        """Write ``data`` atomically: readers see the old value or the new one, never a part.
        ``sync=False`` skips the fsync for hints that may be lost in a power failure."""

    def delete(self, key: str) -> None:
        """Remove a key, or a whole prefix ("folder"); missing keys are not an error."""

    def list(self, prefix: str) -> Iterator[str]:
        """Keys below ``prefix``, for garbage collection and recovery scans."""
