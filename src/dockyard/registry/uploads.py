"""Blob upload sessions: streaming, resumable on any replica, verified before anything is visible.

The session is a row in the database and its bytes are in storage, written through the driver's
``Upload`` (an appended file; S3 multipart parts plus a saved tail). Bytes are hashed and written
in ~1 MiB batches on a thread pool (hashing on the event loop slowed pushes 1.7x in our
measurements) while the next batch is read from the socket.

Everything a later request needs is saved in the session's row when a request ends, and every
``STATE_EVERY`` bytes within a long one: the size, the driver's state (S3: UploadId, parts, the
tail) and the running hash (OpenSSL's SHA256_CTX, see ``hashing``). So the next chunk, or the
closing PUT, may arrive at any replica, and a replica killed mid-request loses at most the bytes
since its last save. Saves are conditional on the row's ``version``: of two requests racing on a
session (a client retrying while its first attempt still runs on another replica) exactly one is
recorded and the other gets 416 with the session's real offset; the driver keeps what each
request writes apart (its own part numbers and tail names), so the loser can never damage what
the winner recorded. Within one process, requests on a session also queue on a lock.

The saved hash state is a shortcut, never a record: without it (no OpenSSL SHA256_CTX, a row from
an older version) a file is re-hashed from the start, and a backend that cannot read an unfinished
upload (S3) has the finished blob read back and hashed before its row is written. Nothing becomes
visible without the final digest check; a failed check removes the stored bytes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.meta import store
from dockyard.meta.db import Database
from dockyard.meta.tables import uploads as uploads_table
from dockyard.registry.digest import Digest
from dockyard.registry.errors import RegistryError
from dockyard.registry.hashing import Hasher, new_hasher
from dockyard.registry.hooks import Change, Hooks, NoHooks
from dockyard.storage.base import StorageDriver, Upload, UploadBusy, UploadTooLarge

BATCH = 1 << 20
STATE_EVERY = 64 << 20
_UUID_LEN = 36


def upload_dir(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def blob_key(digest: Digest) -> str:
    """The key of a blob committed before keys were recorded per copy (storage_key NULL)."""
    return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def stored_blob_key(digest: Digest, upload_id: str) -> str:
    """A committed copy's own key: the digest for people reading the folder, the upload id so
    that two copies of equal content never share a key (see ``tables.blobs``)."""
    return f"{blob_key(digest)}.{upload_id.replace('-', '')}"


def parse_stored_key(key: str) -> tuple[str | None, str | None] | None:
    """(digest or None, upload id or None) from a blob key, None if it is not one: the digest and
    upload id of ``blobs/<alg>/<xx>/<hex>.<upload>``, the digest of a legacy ``.../<hex>``, the
    upload id of a driver-chosen ``blobs/upload/<upload hex>``."""
    parts = key.split("/")
    if len(parts) == 3 and parts[:2] == ["blobs", "upload"]:
        return (None, str(uuid.UUID(parts[2]))) if len(parts[2]) == 32 and _is_hex(parts[2]) else None
    if len(parts) != 4 or parts[0] != "blobs":
        return None
    hex_part, _, suffix = parts[3].partition(".")
    upload_id = str(uuid.UUID(suffix)) if len(suffix) == 32 and _is_hex(suffix) else None
    if suffix and upload_id is None:
        return None
    return f"{parts[1]}:{hex_part}", upload_id


def _is_hex(value: str) -> bool:
    return all(c in "0123456789abcdef" for c in value)


class _Sink:
    """One request's hold on a session: the driver's upload, the running hash, the row version.

    ``hasher`` is None when the bytes before this request cannot be hashed here (no saved state
    and a backend that cannot read an unfinished upload): the finished blob is then read back."""

    def __init__(self, storage: StorageDriver, row: sa.Row, parts: Callable[[], int]) -> None:
        self.upload_id: str = row.id
        self.version: int = row.version
        self.upload: Upload = storage.open_upload(row.id, row.storage_state, parts)
        try:
            self.hasher = self._restore(row)
        except BaseException:
            self.upload.close()
            raise

    def _restore(self, row: sa.Row) -> Hasher | None:
        size = self.upload.size
        hasher: Hasher | None = None
        start = 0
        if row.hash_state is not None and row.size <= size:
            try:
                hasher, start = new_hasher("sha256", row.hash_state), row.size
            except ValueError:  # saved by a libcrypto this process cannot use
                hasher = None
        if hasher is None:
            hasher, start = new_hasher("sha256"), 0
        if start < size:
            # Bytes the saved state does not cover: written by a request killed before its save
            # (a file keeps them), or everything when no state was saved.
            stream = self.upload.read_back(start)
            if stream is None:
                return None
            with stream as f:
                while chunk := f.read(BATCH):
                    hasher.update(chunk)
        return hasher

    @property
    def offset(self) -> int:
        return self.upload.size

    def write(self, chunks: list[bytes]) -> None:
        if self.hasher is not None:
            for chunk in chunks:
                self.hasher.update(chunk)
        self.upload.write(chunks)

    def hash_state(self) -> bytes | None:
        return self.hasher.state() if self.hasher is not None else None


@dataclass(slots=True)
class UploadStatus:
    id: str
    offset: int


class Uploads:
    def __init__(self, db: Database, storage: StorageDriver, pool: Executor, hooks: Hooks | None = None) -> None:
        self.db = db
        self.storage = storage
        self.pool = pool
        self.hooks: Hooks = hooks or NoHooks()
        self._locks: dict[str, asyncio.Lock] = {}

    async def _io(self, fn, *args):  # noqa: ANN001, ANN202 - thin executor hop
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def start(self, name: str) -> UploadStatus:
        upload_id = str(uuid.uuid4())
        await self.db.run_relaxed(store.create_upload, upload_id, name)
        return UploadStatus(upload_id, 0)

    async def _session(self, name: str, upload_id: str) -> sa.Row:
        row = None
        if len(upload_id) == _UUID_LEN:
            row = await self.db.read(store.get_upload, upload_id)
        if row is None or row.repository != name:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id})
        return row

    def busy(self, upload_id: str) -> bool:
        """A request of this process is writing to the session right now (safe from any thread)."""
        lock = self._locks.get(upload_id)
        return lock is not None and lock.locked()

    def _lock(self, upload_id: str) -> asyncio.Lock:
        # Requests on one session in this process queue here rather than race for the row.
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = self._locks[upload_id] = asyncio.Lock()
        return lock

    async def status(self, name: str, upload_id: str) -> UploadStatus:
        row = await self._session(name, upload_id)
        size = await self._io(self.storage.upload_size, row.id, row.storage_state)
        return UploadStatus(upload_id, size)

    async def _open(self, name: str, upload_id: str, start: int | None) -> _Sink:
        """The session's sink, checked to continue at ``start``."""
        row = await self._session(name, upload_id)

        def next_part() -> int:
            return self.db.run_sync(store.next_part, row.id)

        try:
            sink = await self._io(_Sink, self.storage, row, next_part)
        except UploadBusy:
            raise await self._range_error(name, upload_id, start) from None
        except FileNotFoundError:  # what the row recorded is gone from storage: start again
            await self._discard(row.id, row.storage_state)
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id}) from None
        if start is not None and start != sink.offset:
            await self._io(sink.upload.close)
            raise UploadRangeError(sink.offset, start)
        return sink

    async def _range_error(self, name: str, upload_id: str, start: int | None) -> RegistryError:
        """416 with where the session stands now (another request moved it, or holds it)."""
        row = await self._session(name, upload_id)
        size = await self._io(self.storage.upload_size, row.id, row.storage_state)
        return UploadRangeError(size, -1 if start is None else start)

    async def _save(self, sink: _Sink) -> bool:
        """Record where the session stands; False when another request recorded first."""
        state = await self._io(sink.upload.save)
        # A file is its own record, so its row may trail a power failure; a driver's state must not.
        run = self.db.run if state is not None else self.db.run_relaxed
        try:
            recorded = await run(store.save_upload, sink.upload_id, sink.version, sink.offset, sink.hash_state(), state)
        except BaseException:
            await self._io(sink.upload.after_save, False)
            raise
        await self._io(sink.upload.after_save, recorded)
        if recorded:
            sink.version += 1
        return recorded

    async def _pump(self, sink: _Sink, chunks: AsyncIterator[bytes]) -> None:
        """Copy the body into the sink, overlapping socket reads with hashing and writing."""
        pending: asyncio.Future | None = None
        batch: list[bytes] = []
        batched = 0
        saved_at = sink.offset
        try:
            async for chunk in chunks:
                batch.append(chunk)
                batched += len(chunk)
                if batched < BATCH:
                    continue
                if pending is not None:
                    await pending
                pending = asyncio.get_running_loop().run_in_executor(self.pool, sink.write, batch)
                batch, batched = [], 0
                if sink.offset - saved_at >= STATE_EVERY:
                    await pending
                    pending = None
                    saved_at = sink.offset
                    if not await self._save(sink):
                        raise _Lost()
        finally:
            if pending is not None:
                await pending
            if batch:
                await self._io(sink.write, batch)

    async def append(
        self, name: str, upload_id: str, chunks: AsyncIterator[bytes], start: int | None = None
    ) -> UploadStatus:
        async with self._lock(upload_id):
            sink = await self._open(name, upload_id, start)
            recorded = False
            try:
                try:
                    await self._pump(sink, chunks)
                finally:
                    # Also when the body broke off: what arrived is kept for the client to resume.
                    recorded = await self._save(sink)
            except (_Lost, UploadBusy):
                recorded = False
            except UploadTooLarge as error:
                raise RegistryError("SIZE_INVALID", str(error)) from None
            finally:
                await self._io(sink.upload.close)
            if not recorded:
                raise await self._range_error(name, upload_id, start)
        return UploadStatus(upload_id, sink.offset)

    async def finish(
        self,
        name: str,
        upload_id: str,
        digest: Digest,
        chunks: AsyncIterator[bytes] | None = None,
        start: int | None = None,
    ) -> int:
        """Append the last bytes, verify, and make the blob visible. Returns its size."""
        async with self._lock(upload_id):
            sink = await self._open(name, upload_id, start)
            try:
                key, size = await self._finish_storage(name, upload_id, digest, sink, chunks, start)
            finally:
                await self._io(sink.upload.close)
            if sink.hasher is None or digest.algorithm != "sha256":
                actual = await self._io(self._rehash, key, digest.algorithm)
                if actual != digest.hex:
                    await self._io(self.storage.delete, key)
                    await self._discard(upload_id, None)
                    raise _digest_invalid(digest, actual)
            try:
                inserted = await self.db.run(self._commit, upload_id, sink.version, name, str(digest), size, key)
            except BaseException:
                # Refused (a quota), the session was cancelled meanwhile, or the database failed:
                # the copy never became visible, so it goes.
                await self._io(self.storage.delete, key)
                await self._discard(upload_id, None)
                raise
            if not inserted:  # the blob was already stored: keep the one copy
                await self._io(self.storage.delete, key)
        self._locks.pop(upload_id, None)
        self.hooks.observed(Change("upload", name, str(digest), size=size))
        return size

    async def _finish_storage(
        self,
        name: str,
        upload_id: str,
        digest: Digest,
        sink: _Sink,
        chunks: AsyncIterator[bytes] | None,
        start: int | None,
    ) -> tuple[str, int]:
        """The last bytes in, the digest checked if it can be, the stored object made: its key."""
        try:
            if chunks is not None:
                await self._pump(sink, chunks)
        except (_Lost, UploadBusy):
            raise await self._range_error(name, upload_id, start) from None
        except UploadTooLarge as error:
            raise RegistryError("SIZE_INVALID", str(error)) from None
        except BaseException:
            await self._save(sink)  # the body broke off: keep what arrived
            raise
        if sink.hasher is not None and digest.algorithm == "sha256":
            actual = sink.hasher.hexdigest()
            if actual != digest.hex:
                await self._io(sink.upload.after_save, False)
                await self._discard(upload_id, None)
                raise _digest_invalid(digest, actual)
        # Take the session for the commit, so that a racing request can neither finish the same
        # stored upload twice nor add to it any more.
        if not await self.db.run_relaxed(_take, upload_id, sink.version):
            await self._io(sink.upload.after_save, False)
            raise await self._range_error(name, upload_id, start)
        sink.version += 1
        try:
            key = await self._io(sink.upload.finish, stored_blob_key(digest, upload_id))
        except UploadBusy:  # the stored upload was finished or aborted by another request
            raise await self._range_error(name, upload_id, start) from None
        except UploadTooLarge as error:
            raise RegistryError("SIZE_INVALID", str(error)) from None
        return key, sink.offset

    def _commit(
        self, conn: sa.Connection, upload_id: str, version: int, name: str, digest: str, size: int, key: str
    ) -> bool:
        self.hooks.before_blob(conn, name, digest, size)
        ended = conn.execute(
            sa.delete(uploads_table).where(uploads_table.c.id == upload_id, uploads_table.c.version == version)
        ).rowcount
        if not ended:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "the upload was cancelled or taken over", {"uuid": upload_id})
        return store.add_blob(conn, name, digest, size, key)

    def _rehash(self, key: str, algorithm: str) -> str:
        hasher = new_hasher(algorithm)
        with self.storage.reader(key) as f:
            while chunk := f.read(BATCH):
                hasher.update(chunk)
        return hasher.hexdigest()

    async def _discard(self, upload_id: str, state: str | None) -> None:
        await self.db.run_relaxed(store.delete_upload, upload_id)
        await self._io(self.storage.abort_upload, upload_id, state)
        self._locks.pop(upload_id, None)

    async def cancel(self, name: str, upload_id: str) -> None:
        async with self._lock(upload_id):
            row = await self._session(name, upload_id)
            await self._discard(upload_id, row.storage_state)

    async def monolithic(self, name: str, digest: Digest, chunks: AsyncIterator[bytes]) -> int:
        status = await self.start(name)
        try:
            return await self.finish(name, status.id, digest, chunks)
        except BaseException:
            await self._discard(status.id, None)
            raise


def _take(conn: sa.Connection, upload_id: str, version: int) -> bool:
    """Bump the session's version if it is still ``version``: saves of racing requests now fail."""
    table = uploads_table
    done = conn.execute(
        sa.update(table).where(table.c.id == upload_id, table.c.version == version).values(version=version + 1)
    )
    return done.rowcount > 0


class _Lost(Exception):
    """Another request recorded the session first."""


def _digest_invalid(digest: Digest, actual: str) -> RegistryError:
    return RegistryError("DIGEST_INVALID", detail={"expected": str(digest), "actual": f"{digest.algorithm}:{actual}"})


class UploadRangeError(RegistryError):
    """A chunk that does not continue the upload; the API answers 416 with the current Range."""

    def __init__(self, offset: int, start: int) -> None:
        super().__init__(
            "RANGE_INVALID", "chunk does not start where the upload ends", {"expected": offset, "got": start}
        )
        self.offset = offset
