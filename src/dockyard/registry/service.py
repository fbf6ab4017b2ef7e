"""The registry's domain operations, composed from metadata queries and storage.

Caches: manifest bytes by digest are immutable and cached freely. Tag resolutions and
"this repository holds that digest" facts are cached only in this process, dropped by every
write that could change them here, and expire after a few seconds for changes made elsewhere
(the command line, other replicas). "Blob present" answers expire within a third of the garbage
collector's grace period; see ``gc`` for why that keeps pushes safe.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from dockyard.meta import store
from dockyard.meta.db import Database
from dockyard.registry import mediatypes as mt
from dockyard.registry.cache import LRU
from dockyard.registry.digest import Digest, looks_like_digest, parse_digest
from dockyard.registry.errors import RegistryError
from dockyard.registry.hashing import new_hasher
from dockyard.registry.hooks import AllHooks, Change
from dockyard.registry.manifests import parse_manifest, select_platform
from dockyard.registry.names import is_valid_tag, validate_tag
from dockyard.registry.uploads import Uploads, blob_key
from dockyard.storage.base import StorageDriver

SMALL_BLOB = 64 * 1024
STALE_AFTER = 5.0


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int
    key: str
    local_path: Path | None


@dataclass(slots=True)
class PutResult:
    digest: str
    subject: str | None


class Registry:
    def __init__(
        self,
        db: Database,
        storage: StorageDriver,
        pool: Executor,
        hooks: AllHooks | None = None,
        gc_grace: float = 3600,
    ) -> None:
        self.db = db
        self.storage = storage
        self.pool = pool
        self.hooks = hooks or AllHooks()
        self.uploads = Uploads(db, storage, pool, self.hooks)
        self._manifests: LRU[Manifest] = LRU(4096)  # digest -> Manifest
        # Writes here drop what they change; STALE_AFTER bounds how long a change made by another
        # process (the CLI's retention run, another replica) can go unseen.
        self._tags: LRU[str] = LRU(16384, ttl=STALE_AFTER)  # (repo, tag) -> digest
        self._small_blobs: LRU[bytes] = LRU(1024)  # storage key -> bytes, each <= SMALL_BLOB
        self._members: LRU[int] = LRU(65536, ttl=STALE_AFTER)  # (repo, digest) -> 1 (manifests)
        # (repo, digest) -> (size, key). Entries expire well within the collector's grace period:
        # a blob cached as present must not be collected before the entry is gone (see gc.py).
        self._blobs: LRU[tuple[int, str]] = LRU(65536, ttl=min(30.0, gc_grace / 3))
        # Bumped around every write that can change a cached fact; a read only caches what it
        # fetched if no such write began or ended meanwhile, so a slow read never re-caches
        # a stale answer.
        self._generation = 0

    # -- blobs ------------------------------------------------------------------------------

    async def stat_blob(self, name: str, digest: str) -> BlobInfo:
        parsed = parse_digest(digest)
        cached = self._blobs.get((name, digest))
        if cached is None:
            generation = self._generation
            row = await self.db.read(store.blob_in_repository, name, digest)
            if row is None:
                raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})
            if row.unreferenced_since is not None and not await self.db.run_relaxed(store.touch_blob, digest):
                # Unreferenced and collected between the read and the touch: the client uploads.
                raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})
            cached = (row.size, row.storage_key or blob_key(parsed))
            if generation == self._generation:
                self._blobs.put((name, digest), cached)
        size, key = cached
        return BlobInfo(parsed, size, key, self.storage.local_path(key))

    async def small_blob(self, info: BlobInfo) -> bytes | None:
        """The bytes of a small blob (a config, a tiny layer, an artifact), from memory.

        Every pull fetches the image config; sending a few KiB through the file path (stat, open
        and sendfile, each a thread hop) costs far more than the bytes. Blobs are immutable, so
        the cache never needs invalidating. None for blobs too big to keep in memory.
        """
        if info.size > SMALL_BLOB:
            return None
        data = self._small_blobs.get(info.key)
        if data is None:
            data = await asyncio.get_running_loop().run_in_executor(self.pool, self._read_all, info.key)
            if len(data) != info.size:
                raise RegistryError(
                    "BLOB_UNKNOWN", "blob content is missing from storage", {"digest": str(info.digest)}
                )
            self._small_blobs.put(info.key, data)
        return data

    def _read_all(self, key: str) -> bytes:
        try:
            with self.storage.reader(key) as f:
                return f.read()
        except FileNotFoundError:
            return b""

    async def delete_blob(self, name: str, digest: str) -> None:
        parse_digest(digest)
        self._generation += 1
        try:
            deleted = await self.db.run(store.unlink_blob, name, digest)
        finally:
            self._generation += 1
            self._blobs.pop((name, digest))
        if not deleted:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": digest})

    async def mount_blob(self, name: str, digest: str, sources: list[str] | None) -> bool:
        """Link an existing blob into ``name`` from the first of ``sources`` that holds it, or
        from anywhere it is stored when ``sources`` is None (access control passes only the
        repositories the caller can read). False when the client must upload instead."""
        parse_digest(digest)
        if sources is not None and not sources:
            return False

        def mount(conn: store.sa.Connection) -> bool:
            if sources is None:
                found = store.blob_size(conn, digest) is not None
            else:
                found = any(store.blob_in_repository(conn, s, digest) is not None for s in sources)
            if found and store.touch_blob(conn, digest):
                self.hooks.before_blob(conn, name, digest, store.blob_size(conn, digest) or 0)
                store.link_blob(conn, name, digest)
                return True
            return False

        try:
            return await self.db.run(mount)
        finally:
            self._generation += 1  # the repository's linked blobs (and so its quota use) changed

    async def repositories_holding(self, digest: str) -> list[str]:
        parse_digest(digest)
        return await self.db.read(store.repositories_with_blob, digest)

    async def upload_monolithic(self, name: str, digest: str, chunks: AsyncIterator[bytes]) -> Digest:
        parsed = parse_digest(digest)
        try:
            await self.uploads.monolithic(name, parsed, chunks)
        finally:
            self._generation += 1
        return parsed

    async def finish_upload(
        self, name: str, upload_id: str, digest: str, chunks: AsyncIterator[bytes] | None, start: int | None
    ) -> Digest:
        parsed = parse_digest(digest)
        try:
            await self.uploads.finish(name, upload_id, parsed, chunks, start)
        finally:
            self._generation += 1
        return parsed

    # -- manifests --------------------------------------------------------------------------

    async def put_manifest(
        self, name: str, reference: str, content: bytes, content_type: str, extra_tags: list[str], actor: str = ""
    ) -> PutResult:
        parsed = parse_manifest(content, content_type)
        if looks_like_digest(reference):
            want = parse_digest(reference)
            tag_names: list[str] = []
        else:
            want = None
            tag_names = [validate_tag(reference)]
        tag_names += [validate_tag(t) for t in extra_tags]
        algorithm = want.algorithm if want else "sha256"
        hasher = new_hasher(algorithm)
        hasher.update(content)
        digest = f"{algorithm}:{hasher.hexdigest()}"
        if want and str(want) != digest:
            raise RegistryError("DIGEST_INVALID", detail={"expected": str(want), "actual": digest})

        record = {
            "digest": digest,
            "media_type": parsed.media_type,
            "size": len(content),
            "content": content,
            "subject": parsed.subject,
            "artifact_type": parsed.artifact_type,
            "annotations": json.dumps(parsed.annotations) if parsed.annotations else None,
        }
        references = [(d, "blob") for d in parsed.blobs] + [(d, "manifest") for d in parsed.children]

        def put(conn: store.sa.Connection) -> None:
            repo_id = store.repository_id(conn, name)
            store.lock_blobs(conn, parsed.blobs)  # before the check: a collection cannot take them after it
            missing = store.missing_blobs(conn, repo_id, parsed.blobs)
            missing |= store.missing_manifests(conn, repo_id, parsed.children)
            if missing:
                raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"missing": sorted(missing)}, status=400)
            self.hooks.before_manifest(conn, name, digest, len(content), tag_names)
            store.put_manifest(conn, name, record, references, tag_names)
            self.hooks.after_manifest(conn, name, digest, len(content), tag_names)
            change = Change("push", name, digest, tuple(tag_names), parsed.media_type, len(content), actor, time.time())
            self.hooks.changed(conn, change)

        self._generation += 1
        try:
            await self.db.run(put)
        finally:
            self._generation += 1
            for tag in tag_names:
                self._tags.pop((name, tag))
        self._manifests.put(digest, Manifest(digest, parsed.media_type, content))
        return PutResult(digest, parsed.subject)

    async def get_manifest(self, name: str, reference: str, accept: set[str] | None = None) -> Manifest:
        manifest = await self._resolve(name, reference)
        if accept and manifest.media_type in mt.INDEXES and manifest.media_type not in accept:
            # An old client that cannot read an index gets the platform image it can run.
            child = select_platform(manifest.content, accept)
            if child is not None:
                return await self._resolve(name, child)
        return manifest

    async def _resolve(self, name: str, reference: str) -> Manifest:
        if looks_like_digest(reference):
            parse_digest(reference)
            digest = reference
            if self._members.get(("m", name, digest)) is None:
                generation = self._generation
                row = await self.db.read(store.manifest_by_digest, name, digest)
                if row is None:
                    raise await self._manifest_unknown(name, reference)
                if generation == self._generation:
                    self._members.put(("m", name, digest), 1)
                self._manifests.put(digest, Manifest(row.digest, row.media_type, row.content))
        else:
            if not is_valid_tag(reference):
                raise RegistryError("MANIFEST_UNKNOWN", "invalid tag", {"tag": reference})
            digest = self._tags.get((name, reference))
            if digest is None:
                generation = self._generation
                row = await self.db.read(store.manifest_by_tag, name, reference)
                if row is None:
                    raise await self._manifest_unknown(name, reference)
                digest = row.digest
                if generation == self._generation:
                    self._tags.put((name, reference), digest)
                self._manifests.put(digest, Manifest(row.digest, row.media_type, row.content))
        manifest = self._manifests.get(digest)
        if manifest is None:
            row = await self.db.read(store.manifest_content, digest)
            if row is None:
                raise RegistryError("MANIFEST_UNKNOWN", detail={"reference": reference})
            manifest = Manifest(row.digest, row.media_type, row.content)
            self._manifests.put(digest, manifest)
        return manifest

    async def _manifest_unknown(self, name: str, reference: str) -> RegistryError:
        if await self.db.read(store.repository_id, name) is None:
            return RegistryError("NAME_UNKNOWN", detail={"name": name})
        return RegistryError("MANIFEST_UNKNOWN", detail={"reference": reference})

    async def delete_manifest(self, name: str, reference: str, actor: str = "") -> None:
        by_digest = looks_like_digest(reference)
        if by_digest:
            parse_digest(reference)
        elif not is_valid_tag(reference):
            raise RegistryError("MANIFEST_UNKNOWN", "invalid tag", {"tag": reference})

        def delete(conn: store.sa.Connection) -> bool:
            if by_digest:
                self.hooks.before_untag(conn, name, store.tags_of(conn, name, reference))
                deleted, digest = store.delete_manifest(conn, name, reference), reference
            else:
                self.hooks.before_untag(conn, name, [reference])
                digest = store.tag_digest(conn, name, reference)
                deleted = store.delete_tag(conn, name, reference)
            if deleted:
                tags = () if by_digest else (reference,)
                self.hooks.changed(conn, Change("delete", name, digest or "", tags, actor=actor, at=time.time()))
            return deleted

        self._generation += 1
        try:
            deleted = await self.db.run(delete)
        finally:
            self._generation += 1
            self._members.pop(("m", name, reference))
            self._tags.discard_where(lambda k: k[0] == name)
        if not deleted:
            raise await self._manifest_unknown(name, reference)

    @property
    def generation(self) -> int:
        """Changes with every write this process makes: a version for caches built on top."""
        return self._generation

    def forget(self) -> None:
        """Drop every cached fact that a collection or retention run may have changed."""
        self._generation += 1
        self._tags.clear()
        self._members.clear()
        self._blobs.clear()

    # -- listings ---------------------------------------------------------------------------

    async def list_tags(self, name: str, limit: int | None, last: str | None) -> list[str]:
        found = await self.db.read(store.list_tags, name, limit, last)
        if found is None:
            raise RegistryError("NAME_UNKNOWN", detail={"name": name})
        return found

    async def catalog(self, limit: int | None, last: str | None) -> list[str]:
        return await self.db.read(store.list_repositories, limit, last)

    async def referrers(self, name: str, digest: str, artifact_type: str | None) -> list[dict]:
        parse_digest(digest)
        rows = await self.db.read(store.referrers, name, digest)
        result = []
        for row in rows:
            if artifact_type and row.artifact_type != artifact_type:
                continue
            descriptor = {"mediaType": row.media_type, "digest": row.digest, "size": row.size}
            if row.artifact_type:
                descriptor["artifactType"] = row.artifact_type
            if row.annotations:
                descriptor["annotations"] = json.loads(row.annotations)
            result.append(descriptor)
        return result
