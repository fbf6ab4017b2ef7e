"""The storage driver protocol.

Drivers move opaque bytes under slash-separated keys; everything about digests, repositories
and visibility lives in ``dockyard.registry``. Methods are synchronous and are called from a
thread pool, which suits both local files and S3-style SDKs. The protocol is kept this small on
purpose, like Distribution's StorageDriver: a new backend should be an afternoon.

Upload sessions are the one place where drivers differ in kind: a local file can be appended to
and read back, an S3 multipart upload can only take whole parts (>= 5 MiB but the last) and cannot
be read until it is complete. So a driver hands out an ``Upload`` for one request's writes and
describes where it stands as a small opaque *state* string, which the registry keeps in the
database with the session (``uploads.storage_state``): any replica can continue the session from
it, and nothing a later request needs stays in a process's memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

# Hands out part numbers unique within one upload session (a counter in the database), so two
# requests racing on a session never write the same part of a multipart upload.
PartNumbers = Callable[[], int]


class UploadBusy(Exception):
    """Another request is writing to this upload session right now."""


class UploadTooLarge(Exception):
    """The session reached what the backend can hold in one object."""


class Upload(Protocol):
    """One request's handle on an upload session's bytes."""

    size: int  # bytes the session holds, including those written through this handle

    def write(self, chunks: list[bytes]) -> None:
        """Append the pieces, in order."""

    def save(self) -> str | None:
        """Make what was written so far outlive this process, and return the state that finds it
        again (None when the driver needs none). The registry records it with the session."""

    def after_save(self, recorded: bool) -> None:
        """Whether the registry recorded the last ``save``'s state: if so, what that state replaced
        can go; if not (another request won the session), what this handle wrote can go."""

    def read_back(self, offset: int) -> BinaryIO | None:
        """The session's bytes from ``offset`` (to re-hash them), or None when the backend cannot
        read an unfinished upload: the registry then verifies the finished blob instead."""

    def finish(self, key: str) -> str:
        """Make the bytes a stored object without copying them and return its key: ``key`` (the
        registry's suggestion, named after the digest) or a key the driver chose when the upload
        began. The object is not visible to clients until the registry's row says so."""

    def close(self) -> None:
        """Release what this handle holds (locks, buffers); nothing unsaved is kept."""


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """Upload data held by the backend: a folder, a saved tail, an unfinished multipart upload."""

    upload_id: str  # the registry's session id
    started: float  # Unix time


def per_upload_key(upload_id: str) -> str:
    """The key of a blob whose driver must choose it before the digest is known (an S3 multipart
    upload is created at its final key): ``blobs/upload/<session id, hex>``. Garbage collection
    knows this shape (``registry.uploads.parse_stored_key``)."""
    return f"blobs/upload/{upload_id.replace('-', '')}"


class StorageDriver(Protocol):
    def size(self, key: str) -> int | None:
        """Size in bytes, or None when the key does not exist."""

    def reader(self, key: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        """A binary stream from ``offset`` (``length`` bytes at most, when given; drivers may use it
        to ask for less); FileNotFoundError when missing."""

    def local_path(self, key: str) -> Path | None:
        """A filesystem path for zero-copy sends (sendfile), or None for remote drivers."""

    def download_url(self, key: str) -> str | None:
        """A short-lived URL clients may be redirected to for the bytes, or None: serve them."""

    def open_upload(self, upload_id: str, state: str | None, parts: PartNumbers) -> Upload:
        """Continue (or begin) session ``upload_id`` where ``state`` says it stands; UploadBusy when
        another request holds it."""

    def upload_size(self, upload_id: str, state: str | None) -> int:
        """How many bytes the session holds, without taking it (for status requests)."""

    def abort_upload(self, upload_id: str, state: str | None) -> None:
        """Drop everything the session holds, whatever request wrote it (``state`` may be None:
        the sweeper has none); missing pieces are not an error."""

    def pending_uploads(self) -> Iterator[PendingUpload]:
        """Upload data held by the backend, for sweeping what no session owns any more."""

    def put(self, key: str, data: bytes, sync: bool = True) -> None:
        """Write ``data`` atomically: readers see the old value or the new one, never a part.
        ``sync=False`` skips the fsync for hints that may be lost in a power failure."""

    def delete(self, key: str) -> None:
        """Remove a key, or a whole prefix ("folder"); missing keys are not an error."""

    def list(self, prefix: str) -> Iterator[str]:
        """Keys below ``prefix``, for garbage collection and recovery scans."""
