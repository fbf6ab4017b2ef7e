"""Online garbage collection: frees what nothing references while pushes and pulls go on.

Distribution's collector needs the registry read-only, because it decides from a snapshot and
deletes later; a push in between loses blobs (distribution/distribution#3045). Here every rule
that keeps a blob alive is a fact in the database, checked again in the transaction that
deletes it:

* A manifest references it (``manifest_references``); a manifest PUT stops the blob's clock
  in the same transaction that checks the blob is there.
* Its clock (``blobs.unreferenced_since``) is younger than the grace period. The clock starts
  when the blob is uploaded or first found unreferenced, and restarts whenever a client HEADs,
  mounts or uploads it again: that is a push in progress, about to reference it. Cached "blob
  is here" answers expire in a third of the grace period, so a client told "present" from the
  cache is still inside the window.
* It is linked to a repository with an upload active within the grace period (a long push
  that checked for the blob long ago).

Bytes are deleted only after the row is gone, and each committed copy has its own storage key,
so a concurrent re-upload of equal content never loses its file to the deletion of the old one.
A blob being read when it is deleted is still sent in full (an open file survives its unlink).

One run: remove abandoned upload sessions; sweep upload data no session owns (S3 multipart
uploads and saved tails, upload folders: left by a crash between a session's end and the removal
of its data); remove manifests no repository links; start or stop blob clocks; delete blobs whose
clock ran out; delete stored files that no row or live upload owns (a crash between a rename or
a multipart completion and its commit). Runs on the server's schedule and from
``dockyard gc``; a lease in the database keeps runs from overlapping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from dockyard.meta import collect
from dockyard.meta.db import Database
from dockyard.registry import jobs
from dockyard.registry.digest import parse_digest
from dockyard.registry.uploads import blob_key, parse_stored_key
from dockyard.storage.base import StorageDriver

LEASE = "gc"
LEASE_TTL = 300.0
BATCH = 500


class CollectionBusy(Exception):
    """Another process holds the collection lease."""


@dataclass(slots=True)
class Report:
    dry_run: bool
    grace_seconds: float
    uploads_removed: int = 0
    manifests_removed: int = 0
    manifest_bytes_freed: int = 0
    blobs_removed: int = 0
    blob_bytes_freed: int = 0
    orphan_files_removed: int = 0
    orphan_bytes_freed: int = 0
    pending_uploads_aborted: int = 0  # upload data (an S3 multipart upload, a folder) no session owned
    blobs_marked: int = 0
    blobs_waiting: int = 0  # unreferenced, still inside the grace period
    blob_bytes_waiting: int = 0
    seconds: float = 0.0
    removed: list[str] = field(default_factory=list)  # digests, capped, for --dry-run listings

    @property
    def bytes_freed(self) -> int:
        return self.manifest_bytes_freed + self.blob_bytes_freed + self.orphan_bytes_freed

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_freed": self.bytes_freed}


class Collector:
    def __init__(
        self,
        db: Database,
        storage: StorageDriver,
        grace: float,
        upload_ttl: float,
        busy_upload: Callable[[str], bool] = lambda _id: False,
    ) -> None:
        self.db = db
        self.storage = storage
        self.grace = grace
        self.upload_ttl = upload_ttl
        self.busy_upload = busy_upload  # an upload this process is writing right now
        self.owner = jobs.owner_id()

    def run(self, dry_run: bool = False, trigger: str = "cli") -> Report:
        """One collection, synchronously (the server runs it in a thread)."""
        if not self.db.run_sync(jobs.acquire, LEASE, self.owner, LEASE_TTL):
            held = self.db.run_sync(jobs.holder, LEASE)
            raise CollectionBusy(f"a collection is already running ({held.owner if held else 'just finished'})")
        started = time.monotonic()
        run_id = self.db.run_sync(jobs.start_run, "gc", trigger, dry_run)
        report = Report(dry_run, self.grace)
        try:
            now = time.time()
            self._uploads(report, now, dry_run)
            self._pending_uploads(report, dry_run)
            self._manifests(report, dry_run)
            self._blobs(report, now, dry_run)
            self._orphan_files(report, dry_run)
        finally:
            report.seconds = round(time.monotonic() - started, 3)
            summary = report.as_dict()
            summary["removed"] = summary["removed"][:100]
            self.db.run_sync(jobs.finish_run, run_id, summary)
            self.db.run_sync(jobs.release, LEASE, self.owner)
        return report

    def _renew(self) -> None:
        if not self.db.run_sync(jobs.acquire, LEASE, self.owner, LEASE_TTL):
            raise CollectionBusy("the collection lease was lost")

    def _uploads(self, report: Report, now: float, dry_run: bool) -> None:
        idle_before = now - self.upload_ttl
        for upload_id in self.db.run_sync(collect.abandoned_uploads, idle_before, 100_000):
            if self.busy_upload(upload_id):
                continue
            if dry_run or self.db.run_sync(collect.delete_abandoned_upload, upload_id, idle_before):
                if not dry_run:
                    self.storage.abort_upload(upload_id, None)
                report.uploads_removed += 1

    def _pending_uploads(self, report: Report, dry_run: bool) -> None:
        """Abort upload data whose session row is gone: the row is created before any data and
        deleted before the data (finish, cancel, abandonment), so data without a row is garbage.
        Data of sessions idle past ``upload_ttl`` went with their rows in ``_uploads``."""
        seen: set[str] = set()
        for batch in _batched((p.upload_id for p in self.storage.pending_uploads()), BATCH):
            candidates = set(batch) - seen
            seen |= candidates
            live = self.db.run_sync(collect.upload_ids, candidates)
            for upload_id in sorted(candidates - live):
                if self.busy_upload(upload_id):
                    continue
                if not dry_run:
                    self.storage.abort_upload(upload_id, None)
                report.pending_uploads_aborted += 1

    def _manifests(self, report: Report, dry_run: bool) -> None:
        while True:
            rows = self.db.run_sync(collect.orphan_manifests, BATCH)
            if dry_run:
                report.manifests_removed = len(rows)
                report.manifest_bytes_freed = sum(r.size for r in rows)
                return
            if not rows:
                return
            removed = self.db.run_sync(collect.delete_orphan_manifests, [r.digest for r in rows])
            report.manifests_removed += removed
            report.manifest_bytes_freed += sum(r.size for r in rows) if removed == len(rows) else 0
            if removed == 0:
                return
            self._renew()

    def _blobs(self, report: Report, now: float, dry_run: bool) -> None:
        cutoff = now - self.grace
        if not dry_run:
            report.blobs_marked, _ = self.db.run_sync(collect.mark, now)
        after = ""
        while True:
            rows = self.db.run_sync(collect.collectable_blobs, cutoff, BATCH, after)
            if not rows:
                break
            after = rows[-1].digest
            gone = rows if dry_run else self.db.run_sync(collect.delete_blobs, [r.digest for r in rows], cutoff)
            for row in gone:
                if not dry_run:
                    self.storage.delete(row.storage_key or blob_key(parse_digest(row.digest)))
                report.blobs_removed += 1
                report.blob_bytes_freed += row.size
                if len(report.removed) < 10_000:
                    report.removed.append(row.digest)
            if not dry_run:
                self._renew()
        waiting = self.db.run_sync(collect.waiting, cutoff)
        report.blobs_waiting, report.blob_bytes_waiting = waiting

    def _orphan_files(self, report: Report, dry_run: bool) -> None:
        for batch in _batched(self.storage.list("blobs"), BATCH):
            parsed = {key: parse_stored_key(key) for key in batch}
            stored = {key: p for key, p in parsed.items() if p is not None}
            # Sessions first, rows second: a finishing upload deletes its session and inserts its
            # row in one transaction, so a copy whose session is gone has its row visible to the
            # second read (even at READ COMMITTED, where each statement has its own snapshot).
            live_uploads = self.db.run_sync(collect.upload_ids, {u for _, u in stored.values() if u})
            owned = self.db.run_sync(collect.owned_keys, [key for key, (_, u) in stored.items() if u])
            legacy = [digest for digest, u in stored.values() if digest and u is None]
            rows = self.db.run_sync(collect.stored_keys, legacy)
            for key, (digest, upload_id) in stored.items():
                if upload_id is not None:
                    if key in owned or upload_id in live_uploads:
                        continue
                elif digest in rows and rows[digest] is None:  # a legacy key, named by its digest
                    continue
                size = self.storage.size(key) or 0
                if not dry_run:
                    self.storage.delete(key)
                report.orphan_files_removed += 1
                report.orphan_bytes_freed += size


def _batched(items: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
