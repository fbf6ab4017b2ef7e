#!/usr/bin/env python3
"""Second push of an image that shares a 200 MiB base layer with another repository.

Usage: ``dedupe.py URL [--user U --password P] [--base-mib 200] [--rounds 3]``

Why: teams build many images on one base. A client that has never pushed to this registry
(a fresh CI runner) knows nothing to mount from, so it asks with HEAD whether each layer is in
the target repository and uploads whatever is not. Distribution answers 404 for a blob held by
another repository, so the base goes up again; dockyard with access control links a blob the
caller can read elsewhere and answers 200. This measures what that client sends and how long
the push takes, like ``docker push`` does it: HEAD each blob, upload the missing, PUT the
manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid

from benchlib import MiB, Target, login, push_monolithic, request, sha256_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _manifest(blobs: list[tuple[bytes, str]]) -> bytes:
    config, *layers = blobs
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config[1],
                   "size": len(config[0])},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(b)}
                   for b, d in layers],
    }).encode()


def push_like_docker(target: Target, name: str, blobs: list[tuple[bytes, str]], tag: str) -> tuple[float, int]:
    """(seconds, body bytes sent) for a push that checks every blob first."""
    sent = 0
    conn = target.connect()
    start = time.perf_counter()
    try:
        for data, digest in blobs:
            resp, _ = request(conn, "HEAD", f"/v2/{name}/blobs/{digest}", expect=(200, 404))
            if resp.status == 404:
                push_monolithic(conn, target, name, data, digest)
                sent += len(data)
        manifest = _manifest(blobs)
        request(conn, "PUT", f"/v2/{name}/manifests/{tag}", body=manifest,
                headers={"Content-Type": OCI_MANIFEST, "Content-Length": str(len(manifest))}, expect=(201,))
        sent += len(manifest)
    finally:
        conn.close()
    return time.perf_counter() - start, sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--user")
    parser.add_argument("--password", default="")
    parser.add_argument("--base-mib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    target = Target.parse(args.url)
    results = []
    for _ in range(args.rounds):
        run = uuid.uuid4().hex[:8]
        base_repo, app_repo = f"team/base-{run}", f"team/app-{run}"
        if args.user:
            login(target, args.user, args.password,
                  [f"repository:{base_repo}:pull,push", f"repository:{app_repo}:pull,push"])
        base = [(d, sha256_digest(d)) for d in (os.urandom(args.base_mib * MiB),)]
        configs = [(c, sha256_digest(c)) for c in (os.urandom(512), os.urandom(512))]
        apps = [(a, sha256_digest(a)) for a in (os.urandom(MiB), os.urandom(MiB))]
        push_like_docker(target, base_repo, [configs[0], *base, apps[0]], "v1")
        seconds, sent = push_like_docker(target, app_repo, [configs[1], *base, apps[1]], "v1")
        results.append({"seconds": seconds, "bytes_sent": sent})
        print(f"second push: {seconds * 1000:.0f} ms, {sent / MiB:.2f} MiB sent", flush=True)
    summary = {
        "url": target.base,
        "base_mib": args.base_mib,
        "median_ms": round(statistics.median(r["seconds"] for r in results) * 1000, 1),
        "median_MiB_sent": round(statistics.median(r["bytes_sent"] for r in results) / MiB, 3),
        "runs": results,
    }
    print(f"{target.base}: second push of an image sharing a {args.base_mib} MiB base: "
          f"median {summary['median_ms']} ms, {summary['median_MiB_sent']} MiB sent")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
