"""One writer of the GC soak test (test_gc_soak.py), run as its own process.

It pushes images the way docker does (HEAD each blob, upload the missing ones, PUT the
manifest), moves a few tags from image to image, deletes most manifests that lost their tag
(making garbage for the collector), and pulls live images back while it goes. It writes a JSON
report: the images it left in place and every request that failed.

Usage: python -m tests.soak_writer URL REPOSITORY WRITER_ID SECONDS OUT.json
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
BASES = 6  # base layers shared by every writer: the blobs most exposed to the collection race


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def base_layer(i: int) -> bytes:
    return random.Random(f"base-{i}").randbytes(16 * 1024 * (i + 1))


class Writer:
    def __init__(self, url: str, repository: str, writer: int) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.repo = repository
        self.writer = writer
        self.failures: list[dict[str, Any]] = []
        self.kept: dict[str, dict[str, Any]] = {}  # manifest digest -> what to verify
        self.tags: dict[str, str] = {}  # tag -> manifest digest
        self.counts = {"pushes": 0, "blob_uploads": 0, "blob_skips": 0, "deletes": 0, "pulls": 0}

    def fail(self, what: str, response: httpx.Response) -> None:
        try:
            code = response.json()["errors"][0]["code"]
        except Exception:
            code = None
        self.failures.append({"what": what, "status": response.status_code, "code": code, "body": response.text[:300]})

    def put_blob(self, data: bytes) -> bool:
        digest = sha(data)
        head = self.http.head(f"/v2/{self.repo}/blobs/{digest}")
        if head.status_code == 200:
            self.counts["blob_skips"] += 1
            return True
        r = self.http.post(f"/v2/{self.repo}/blobs/uploads/", params={"digest": digest}, content=data)
        if r.status_code != 201:
            self.fail(f"upload {digest}", r)
            return False
        self.counts["blob_uploads"] += 1
        return True

    def push(self, n: int) -> None:
        rnd = random.Random()
        base = base_layer(rnd.randrange(BASES))
        own = os.urandom(rnd.choice([512, 4096, 65536]))
        config = json.dumps({"architecture": "amd64", "os": "linux", "writer": self.writer, "n": n}).encode()
        blobs = [config, base, own]
        if not all(self.put_blob(b) for b in blobs):
            return
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha(config),
                    "size": len(config),
                },
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(b), "size": len(b)}
                    for b in (base, own)
                ],
            }
        ).encode()
        tag = f"w{self.writer}-t{n % 3}"
        r = self.http.put(f"/v2/{self.repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST})
        if r.status_code != 201:
            self.fail(f"manifest {tag}", r)
            return
        self.counts["pushes"] += 1
        digest = sha(manifest)
        self.kept[digest] = {"manifest": manifest.decode(), "blobs": {sha(b): len(b) for b in blobs}, "tag": tag}
        previous = self.tags.get(tag)
        self.tags[tag] = digest
        if n % 5 == 0:  # re-tag: a second name for the same image
            extra = f"w{self.writer}-stable"
            r = self.http.put(
                f"/v2/{self.repo}/manifests/{extra}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
            )
            if r.status_code != 201:
                self.fail(f"retag {extra}", r)
            else:
                old = self.tags.get(extra)
                self.tags[extra] = digest
                self.drop_if_untagged(old, rnd)
        self.drop_if_untagged(previous, rnd)

    def drop_if_untagged(self, digest: str | None, rnd: random.Random) -> None:
        """Delete most images that no tag of ours names any more; keep a few as untagged."""
        if digest is None or digest in self.tags.values() or rnd.random() < 0.2:
            return
        r = self.http.delete(f"/v2/{self.repo}/manifests/{digest}")
        if r.status_code != 202:
            self.fail(f"delete {digest}", r)
            return
        self.counts["deletes"] += 1
        self.kept.pop(digest, None)

    def pull_some(self) -> None:
        if not self.tags:
            return
        tag, digest = random.choice(list(self.tags.items()))
        r = self.http.get(f"/v2/{self.repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        if r.status_code != 200 or sha(r.content) != digest:
            self.fail(f"pull {tag}", r)
            return
        for blob, size in self.kept[digest]["blobs"].items():
            b = self.http.get(f"/v2/{self.repo}/blobs/{blob}")
            if b.status_code != 200 or sha(b.content) != blob or len(b.content) != size:
                self.fail(f"pull blob {blob}", b)
        self.counts["pulls"] += 1

    def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            self.push(n)
            if n % 2:
                self.pull_some()
            n += 1


def main() -> None:
    url, repository, writer, seconds, out = sys.argv[1:6]
    w = Writer(url, repository, int(writer))
    w.run(float(seconds))
    with open(out, "w") as f:
        json.dump({"failures": w.failures, "kept": w.kept, "tags": w.tags, "counts": w.counts}, f)


if __name__ == "__main__":
    main()
