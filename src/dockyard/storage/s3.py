"""S3 driver: AWS S3 and the S3 APIs of SeaweedFS, MinIO, Ceph RGW, Cloudflare R2 and GCS.

Layout under the configured prefix:

* ``blobs/upload/<session hex>``: a committed blob. Its multipart upload is created at this key
  when the session's first part is sent, so completing the upload *is* the commit: no server-side
  copy, whatever the size. ``blobs.storage_key`` maps the digest to it.
* ``uploads/<session id>/tail-<random>``: the bytes of a session that do not fill a part yet (S3
  wants at least 5 MiB in every part but the last), saved at the end of a request so that the
  next chunk can be taken by another replica. Each save writes a new name and the one it replaces
  is deleted once the database recorded the new state, so a request that loses a race for the
  session never overwrites what the winner recorded.
* ``_health/...``: the readiness probe's object.

The session's state (``uploads.storage_state``) is JSON: the multipart UploadId, its parts (number,
ETag, size), the tail's key and size. Part numbers come from a counter in the database, unique per
session, so racing requests write different parts; only the parts of the recorded state are
listed when the upload completes. Parts are ``PART_SIZE`` (16 MiB) and grow with the part number
(x2 every 2,000 parts) so that 10,000 parts reach ~970 GiB while at most one part is held in
memory per request. A request that ends with at least 5 MiB buffered sends it as a (short) part
rather than as a tail, while the part numbers leave room for it.

A blob smaller than one part (most configs and small layers) is written with one PutObject when
its session finishes; every other blob is a multipart upload, so no request ever sends more than a
part and the 5 GiB single-PUT limit never applies. Credentials come from boto3's own chain
(environment, profile, instance or pod role), never from dockyard's settings.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from dockyard.storage.base import PartNumbers, PendingUpload, UploadBusy, UploadTooLarge, per_upload_key

MiB = 1 << 20
PART_SIZE = 16 * MiB
MIN_PART = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000
GROW_EVERY = 2_000  # parts between doublings of the part size
EARLY_PARTS = 8_000  # short parts (a request's >= 5 MiB remainder) only below this part number
UPLOADS = "uploads"
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


def part_size(number: int) -> int:
    """The size of part ``number`` (1-based) when the data keeps coming."""
    return PART_SIZE << min((number - 1) // GROW_EVERY, 4)


def _missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _NOT_FOUND


class S3Driver:
    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str = "",
        region: str = "",
        prefix: str = "",
        path_style: bool | None = None,
        redirect: bool = False,
        presign_seconds: float = 600,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.redirect = redirect
        self.presign_seconds = int(presign_seconds)
        if path_style is None:  # SeaweedFS, MinIO & co. on a host name of their own: path-style
            path_style = bool(endpoint)
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "auto"},
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=64,
            connect_timeout=10,
            read_timeout=60,
            # Compatibles differ in what they accept of the newer flexible checksums; the digest
            # check of every blob is ours anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint or None, region_name=region or None, config=config
        )

    # -- keys --------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid storage key {key!r}")
        return self.prefix + key

    def _unkey(self, object_key: str) -> str:
        return object_key[len(self.prefix) :]

    # -- objects -----------------------------------------------------------------------------

    def size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as error:
            if _missing(error):
                return None
            raise

    def reader(self, key: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        if length == 0:
            return io.BytesIO(b"")
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if offset or length is not None:
            args["Range"] = f"bytes={offset}-{'' if length is None else offset + length - 1}"
        try:
            body = self.client.get_object(**args)["Body"]
        except ClientError as error:
            if _missing(error):
                raise FileNotFoundError(key) from None
            if error.response.get("Error", {}).get("Code") == "InvalidRange":  # offset at the end
                return io.BytesIO(b"")
            raise
        return _Body(body)

    def local_path(self, key: str) -> Path | None:
        return None

    def download_url(self, key: str) -> str | None:
        if not self.redirect:
            return None
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=self.presign_seconds
        )

    def put(self, key: str, data: bytes, sync: bool = True) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def delete(self, key: str) -> None:
        """The key itself and everything below ``key/``."""
        self._delete_keys([self._key(key)])
        self._delete_keys(self._key(k) for k in self.list(key))

    def _delete_keys(self, object_keys: Any) -> None:
        batch: list[dict[str, str]] = []
        for object_key in object_keys:
            batch.append({"Key": object_key})
            if len(batch) == 1000:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                batch = []
        if batch:
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def list(self, prefix: str) -> Iterator[str]:
        full = self._key(prefix.rstrip("/") + "/") if prefix else self.prefix
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            for item in page.get("Contents", []):
                yield self._unkey(item["Key"])

    # -- uploads -----------------------------------------------------------------------------

    def open_upload(self, upload_id: str, state: str | None, parts: PartNumbers) -> S3Upload:
        return S3Upload(self, upload_id, json.loads(state) if state else {}, parts)

    def upload_size(self, upload_id: str, state: str | None) -> int:
        saved = json.loads(state) if state else {}
        return sum(p[2] for p in saved.get("parts", [])) + int(saved.get("tail_size", 0))

    def abort_upload(self, upload_id: str, state: str | None) -> None:
        self._abort_multiparts(per_upload_key(upload_id))
        self.delete(f"{UPLOADS}/{upload_id}")

    def _abort_multiparts(self, key: str, keep: str | None = None) -> None:
        """Every unfinished multipart upload at ``key`` but ``keep``: one a request created and
        never got recorded (it was killed, or lost the session to another) costs storage."""
        for page in self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self._key(key)
        ):
            for item in page.get("Uploads", []):
                if item["Key"] == self._key(key) and item["UploadId"] != keep:
                    self._abort(item["Key"], item["UploadId"])

    def _abort(self, object_key: str, multipart_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=multipart_id)
        except ClientError as error:
            if not _missing(error):
                raise

    def pending_uploads(self) -> Iterator[PendingUpload]:
        """Unfinished multipart uploads at blob keys, and the sessions with saved tails."""
        for page in self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self._key("blobs/upload/")
        ):
            for item in page.get("Uploads", []):
                hex_id = self._unkey(item["Key"]).rsplit("/", 1)[-1]
                try:
                    upload_id = str(uuid.UUID(hex_id))
                except ValueError:
                    continue
                yield PendingUpload(upload_id, item["Initiated"].timestamp())
        seen: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(f"{UPLOADS}/")
        ):
            for item in page.get("Contents", []):
                upload_id = self._unkey(item["Key"]).split("/")[1]
                if upload_id not in seen:
                    seen.add(upload_id)
                    yield PendingUpload(upload_id, item["LastModified"].timestamp())


class S3Upload:
    """One request's writes to a session: whole parts go out as they fill, the rest is saved."""

    def __init__(self, driver: S3Driver, upload_id: str, state: dict[str, Any], parts: PartNumbers) -> None:
        self.driver = driver
        self.client = driver.client
        self.bucket = driver.bucket
        self.upload_id = upload_id
        self.next_number = parts
        self.key: str = state.get("key") or per_upload_key(upload_id)
        self.multipart: str | None = state.get("mp")
        self.parts: list[list[Any]] = [list(p) for p in state.get("parts", [])]
        self.tail: str | None = state.get("tail")
        self._created_multipart = False
        self._new_tail: str | None = None
        self.buffer = _Buffer()
        if self.tail:
            with driver.reader(self.tail) as f:
                self.buffer.add(f.read())
            if len(self.buffer) != int(state.get("tail_size", 0)):
                raise FileNotFoundError(f"the saved tail of upload {upload_id} is incomplete")
        self.size = sum(p[2] for p in self.parts) + len(self.buffer)

    def _next_part_size(self) -> int:
        return part_size((self.parts[-1][0] if self.parts else 0) + 1)

    def write(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.buffer.add(chunk)
            self.size += len(chunk)
        while len(self.buffer) >= (target := self._next_part_size()):
            self._send_part(self.buffer.take(target))

    def _send_part(self, data: bytes) -> None:
        object_key = self.driver._key(self.key)
        if self.multipart is None:
            created = self.client.create_multipart_upload(Bucket=self.bucket, Key=object_key)
            self.multipart, self._created_multipart = created["UploadId"], True
        number = self.next_number()
        if number > MAX_PARTS:
            raise UploadTooLarge(f"upload {self.upload_id} needs more than {MAX_PARTS} parts")
        try:
            answer = self.client.upload_part(
                Bucket=self.bucket, Key=object_key, UploadId=self.multipart, PartNumber=number, Body=data
            )
        except ClientError as error:
            if _missing(error):  # another request finished or aborted the session meanwhile
                raise UploadBusy(f"the multipart upload of {self.upload_id} is gone") from None
            raise
        self.parts.append([number, answer["ETag"], len(data)])

    def save(self) -> str | None:
        self._new_tail = None
        if self.buffer:
            last = self.parts[-1][0] if self.parts else 0
            if len(self.buffer) >= MIN_PART and last < EARLY_PARTS:
                self._send_part(self.buffer.take(len(self.buffer)))
            else:
                self._new_tail = f"{UPLOADS}/{self.upload_id}/tail-{uuid.uuid4().hex[:16]}"
                self.driver.put(self._new_tail, self.buffer.peek())
        return json.dumps(
            {
                "key": self.key,
                "mp": self.multipart,
                "parts": self.parts,
                "tail": self._new_tail,
                "tail_size": len(self.buffer) if self._new_tail else 0,
            },
            separators=(",", ":"),
        )

    def after_save(self, recorded: bool) -> None:
        if recorded:
            self._created_multipart = False  # recorded: the session's now, not this request's to abort
            replaced, self.tail = self.tail, self._new_tail
            if replaced and replaced != self.tail:
                self.driver._delete_keys([self.driver._key(replaced)])
        else:
            if self._new_tail:
                self.driver.delete(self._new_tail)
            if self._created_multipart and self.multipart:
                self.driver._abort(self.driver._key(self.key), self.multipart)
        self._new_tail = None

    def read_back(self, offset: int) -> BinaryIO | None:
        return None  # the parts of an unfinished multipart upload cannot be read

    def finish(self, key: str) -> str:
        object_key = self.driver._key(self.key)
        if self.multipart is None:  # less than one part in all: a single small PutObject
            self.client.put_object(Bucket=self.bucket, Key=object_key, Body=self.buffer.take(len(self.buffer)))
        else:
            if self.buffer or not self.parts:
                self._send_part(self.buffer.take(len(self.buffer)))
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=object_key,
                    UploadId=self.multipart,
                    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag, _size in self.parts]},
                )
            except ClientError as error:
                if _missing(error):
                    raise UploadBusy(f"the multipart upload of {self.upload_id} is gone") from None
                raise
            self.driver._abort_multiparts(self.key)  # strays of requests that never got recorded
        if self.tail:  # tails of requests that were killed before recording theirs: the sweeper's
            self.driver._delete_keys([self.driver._key(self.tail)])
        return self.key

    def close(self) -> None:
        self.buffer = _Buffer()


class _Buffer:
    """Received pieces not sent yet, kept as they came: a part is joined once, when it is sent
    (a growing bytearray would copy and over-allocate on the way)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, piece: bytes) -> None:
        if piece:
            self.pieces.append(piece)
            self.size += len(piece)

    def peek(self) -> bytes:
        """Everything, staying buffered."""
        if len(self.pieces) > 1:
            self.pieces = [b"".join(self.pieces)]
        return self.pieces[0] if self.pieces else b""

    def take(self, size: int) -> bytes:
        """The first ``size`` bytes, removed."""
        out: list[bytes] = []
        need = size
        while need:
            piece = self.pieces[0]
            if len(piece) <= need:
                out.append(self.pieces.pop(0))
                need -= len(piece)
            else:
                out.append(piece[:need])
                self.pieces[0] = piece[need:]
                need = 0
        self.size -= size
        return out[0] if len(out) == 1 else b"".join(out)


class _Body(io.RawIOBase):
    """botocore's streaming body as a file object the registry can ``with`` and ``read``."""

    def __init__(self, body: Any) -> None:
        super().__init__()
        self._body = body

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._body.read(None if size is None or size < 0 else size)

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
