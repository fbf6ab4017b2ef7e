"""Local-folder driver: the embedded default.

Every write that becomes visible goes through a temporary file, fsync, rename and a directory
fsync, so a crash at any instant leaves either the old state or the complete new one.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard.storage.base import PartNumbers, PendingUpload, UploadBusy

UPLOADS = "uploads"


def _upload_dir(upload_id: str) -> str:
    return f"{UPLOADS}/{upload_id}"


class FilesystemDriver:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # Keys are built by the registry from validated digests and UUIDs; this check is a
        # second line of defence against path tricks.
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid storage key {key!r}")
        return self.root / key

    def size(self, key: str) -> int | None:
        try:
            return os.stat(self._path(key)).st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def reader(self, key: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        f = open(self._path(key), "rb")  # noqa: SIM115 - returned to the caller
        if offset:
            f.seek(offset)
        return f

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def download_url(self, key: str) -> str | None:
        return None

    def open_upload(self, upload_id: str, state: str | None, parts: PartNumbers) -> FileUpload:
        # The file is the record of what arrived: the state is not needed (and None is saved).
        path = self._path(f"{_upload_dir(upload_id)}/data")
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileUpload(self, path)

    def upload_size(self, upload_id: str, state: str | None) -> int:
        return self.size(f"{_upload_dir(upload_id)}/data") or 0

    def abort_upload(self, upload_id: str, state: str | None) -> None:
        self.delete(_upload_dir(upload_id))

    def pending_uploads(self) -> Iterator[PendingUpload]:
        base = self.root / UPLOADS
        if not base.is_dir():
            return
        for entry in os.scandir(base):
            try:
                started = entry.stat().st_mtime
            except FileNotFoundError:
                continue
            yield PendingUpload(entry.name, started)

    def put(self, key: str, data: bytes, sync: bool = True) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if sync:
            _fsync_dir(path.parent)

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                yield os.path.relpath(os.path.join(dirpath, name), self.root)


class FileUpload:
    """An upload session's file, appended with one ``writev`` per batch.

    An exclusive ``flock`` marks the session as being written: a second request on it, from this
    process or another on the machine (``serve --workers``), gets UploadBusy instead of
    interleaving its bytes, and the lock goes away with the process if it is killed.

    Blobs are fsynced before they become visible. Asking the kernel to start writing each
    ``WRITEBACK_EVERY`` bytes (``sync_file_range``, which does not wait) spreads the disk work
    over the upload, so the final fsync finds little left to do instead of a whole layer.
    """

    WRITEBACK_EVERY = 8 << 20
    _IOV_MAX = 512

    def __init__(self, driver: FilesystemDriver, path: Path) -> None:
        self.driver = driver
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise UploadBusy(str(path)) from None
        self.size = os.fstat(self.fd).st_size
        self._flushed = self.size

    def write(self, chunks: list[bytes]) -> None:
        if len(chunks) > self._IOV_MAX:
            chunks = [b"".join(chunks)]
        total = sum(len(c) for c in chunks)
        written = os.writev(self.fd, chunks)
        if written < total:  # a short write: finish it piece by piece
            rest = memoryview(b"".join(chunks))[written:]
            while rest:
                rest = rest[os.write(self.fd, rest) :]
        self.size += total
        if self.size - self._flushed >= self.WRITEBACK_EVERY:
            _start_writeback(self.fd, self._flushed, self.size - self._flushed)
            self._flushed = self.size

    def save(self) -> str | None:
        return None  # written bytes are in the file (page cache), which outlives the process

    def after_save(self, recorded: bool) -> None:
        pass

    def read_back(self, offset: int) -> BinaryIO:
        f = open(self.path, "rb")  # noqa: SIM115 - returned to the caller
        f.seek(offset)
        return f

    def finish(self, key: str) -> str:
        """fsync, then an atomic rename to ``key`` and a directory fsync."""
        os.fsync(self.fd)
        dst = self.driver._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, dst)
        _fsync_dir(dst.parent)
        try:
            os.rmdir(self.path.parent)
        except OSError:  # not empty, or gone
            pass
        return key

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_SYNC_FILE_RANGE_WRITE = 2
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _sync_file_range = _libc.sync_file_range
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
except (OSError, AttributeError):  # not Linux: the final fsync does all the work
    _sync_file_range = None


def _start_writeback(fd: int, offset: int, length: int) -> None:
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
