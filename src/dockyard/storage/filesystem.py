"""Local-folder driver: the embedded default.

Every write that becomes visible goes through a temporary file, fsync, rename and a directory
fsync, so a crash at any instant leaves either the old state or the complete new one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


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

    def reader(self, key: str, offset: int = 0) -> BinaryIO:
        f = open(self._path(key), "rb")  # noqa: SIM115 - returned to the caller
        if offset:
            f.seek(offset)
        return f

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def appender(self, key: str) -> BinaryIO:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab", buffering=0)  # noqa: SIM115 - the upload owns it

    def truncate(self, key: str, size: int) -> None:
        os.truncate(self._path(key), size)

    def commit(self, src: str, dst: str) -> bool:
        src_path, dst_path = self._path(src), self._path(dst)
        fd = os.open(src_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if dst_path.exists():
            os.unlink(src_path)
            return False
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src_path, dst_path)
        _fsync_dir(dst_path.parent)
        return True

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
