"""The saved hash state is what makes a resumed upload cheap: these tests open sessions the way a
request does (the row from the real metadata database, the bytes through a real FilesystemDriver)
and count the bytes the registry re-reads when a session is reopened."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO

import pytest

from dockyard.meta import store
from dockyard.meta.db import Database
from dockyard.registry import hashing
from dockyard.registry.uploads import _Sink
from dockyard.storage.filesystem import FilesystemDriver, FileUpload

pytestmark = pytest.mark.core


class CountingUpload(FileUpload):
    """The filesystem driver's upload, counting how many bytes are read back."""

    reread = 0

    def read_back(self, offset: int) -> BinaryIO:
        CountingUpload.reread += self.size - offset
        return super().read_back(offset)


class CountingDriver(FilesystemDriver):
    def open_upload(self, upload_id: str, state: str | None, parts) -> FileUpload:  # noqa: ANN001
        path = self._path(f"uploads/{upload_id}/data")
        path.parent.mkdir(parents=True, exist_ok=True)
        return CountingUpload(self, path)


@pytest.fixture
def storage(tmp_path: Path) -> CountingDriver:
    CountingUpload.reread = 0
    return CountingDriver(tmp_path / "storage")


def _new_session(db: Database) -> str:
    upload_id = str(uuid.uuid4())
    db.run_sync(store.create_upload, upload_id, "team/app")
    return upload_id


def _open(db: Database, storage: CountingDriver, upload_id: str) -> _Sink:
    return _Sink(storage, db.run_sync(store.get_upload, upload_id), lambda: 0)


def _write(sink: _Sink, data: bytes) -> None:
    sink.write([data[i : i + 65536] for i in range(0, len(data), 65536)])


def _save(db: Database, sink: _Sink) -> None:
    """What the end of a request does."""
    state = sink.upload.save()
    assert db.run_sync(store.save_upload, sink.upload_id, sink.version, sink.offset, sink.hash_state(), state)
    sink.upload.after_save(True)
    sink.version += 1
    sink.upload.close()


@pytest.mark.skipif(not hashing.resumable(), reason="libcrypto's SHA256_CTX is not available")
def test_reopened_session_continues_from_saved_state_without_rereading(db: Database, storage: CountingDriver) -> None:
    upload_id = _new_session(db)
    first, second = os.urandom(3 << 20), os.urandom(1 << 20)
    sink = _open(db, storage, upload_id)
    _write(sink, first)
    _save(db, sink)
    row = db.run_sync(store.get_upload, upload_id)
    assert row.size == len(first) and len(row.hash_state) == 112
    reopened = _open(db, storage, upload_id)
    assert CountingUpload.reread == 0
    assert reopened.offset == len(first)
    _write(reopened, second)
    _save(db, reopened)
    assert reopened.hasher.hexdigest() == hashlib.sha256(first + second).hexdigest()


@pytest.mark.skipif(not hashing.resumable(), reason="libcrypto's SHA256_CTX is not available")
def test_bytes_after_the_saved_state_are_rehashed_only(db: Database, storage: CountingDriver) -> None:
    """A crash after data was written but before the state was saved: only the tail is re-read."""
    upload_id = _new_session(db)
    first, tail = os.urandom(2 << 20), os.urandom(300_000)
    sink = _open(db, storage, upload_id)
    _write(sink, first)
    _save(db, sink)
    with open(storage.root / f"uploads/{upload_id}/data", "ab") as f:  # bytes the killed server had written
        f.write(tail)
    reopened = _open(db, storage, upload_id)
    assert CountingUpload.reread == len(tail)
    assert reopened.offset == len(first) + len(tail)
    assert reopened.hasher.hexdigest() == hashlib.sha256(first + tail).hexdigest()
    reopened.upload.close()


@pytest.mark.parametrize("damage", ["missing", "wrong-size", "ahead-of-data"])
def test_unusable_state_falls_back_to_rehashing_everything(db: Database, storage: CountingDriver, damage: str) -> None:
    upload_id = _new_session(db)
    data = os.urandom(1 << 20)
    sink = _open(db, storage, upload_id)
    _write(sink, data)
    _save(db, sink)
    if damage == "missing":
        db.run_sync(lambda c: c.exec_driver_sql("UPDATE uploads SET hash_state = NULL"))
    elif damage == "wrong-size":  # written by a libcrypto with another struct layout
        db.run_sync(lambda c: c.execute(store.sa.update(store.uploads).values(hash_state=b"x" * 50)))
    else:  # storage lost bytes the state covered (a power failure before the file reached the disk)
        os.truncate(storage.root / f"uploads/{upload_id}/data", len(data) // 2)
        data = data[: len(data) // 2]
    reopened = _open(db, storage, upload_id)
    assert CountingUpload.reread == len(data)
    assert reopened.hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    reopened.upload.close()


def test_a_second_writer_on_a_session_is_refused(db: Database, storage: CountingDriver) -> None:
    """The file lock: another request (another worker process, too) cannot interleave its bytes."""
    from dockyard.storage.base import UploadBusy

    upload_id = _new_session(db)
    sink = _open(db, storage, upload_id)
    with pytest.raises(UploadBusy):
        _open(db, storage, upload_id)
    sink.upload.close()
    _open(db, storage, upload_id).upload.close()


def test_a_save_from_a_stale_version_is_not_recorded(db: Database, storage: CountingDriver) -> None:
    """Two requests racing on one session: the one that saves second started from a version that
    is gone, so its state is not recorded (the API answers it 416)."""
    upload_id = _new_session(db)
    row = db.run_sync(store.get_upload, upload_id)
    assert db.run_sync(store.save_upload, upload_id, row.version, 10, None, None)
    assert not db.run_sync(store.save_upload, upload_id, row.version, 20, None, None)
    assert db.run_sync(store.get_upload, upload_id).size == 10


def test_without_openssl_contexts_a_resumed_upload_is_rehashed_from_storage(
    db: Database, storage: CountingDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where libcrypto lacks SHA256_CTX, hashlib is used, no state is saved, and a reopened
    session re-reads its bytes: slower, never wrong."""
    monkeypatch.setattr(hashing, "_LIB", None)
    upload_id = _new_session(db)
    first, second = os.urandom(1 << 20), os.urandom(12345)
    sink = _open(db, storage, upload_id)
    assert isinstance(sink.hasher, hashing.HashlibHasher)
    _write(sink, first)
    _save(db, sink)
    assert db.run_sync(store.get_upload, upload_id).hash_state is None
    reopened = _open(db, storage, upload_id)
    assert CountingUpload.reread == len(first)
    _write(reopened, second)
    assert reopened.hasher.hexdigest() == hashlib.sha256(first + second).hexdigest()
    reopened.upload.close()
