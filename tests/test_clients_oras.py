"""ORAS artifacts that refer to an image (``subject``), found through the referrers API.

The oras Go CLI cannot be installed here (no Go toolchain, no Debian package), so these tests
drive the Python SDK (PyPI ``oras``), which pushes and pulls over the same distribution API.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from pathlib import Path

import httpx
import pytest

from tests.images import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, push_image, random_image, sha256
from tests.server import RegistryServer

oras_provider = pytest.importorskip("oras.provider", reason="the oras SDK comes with the test extras")
oras_oci = pytest.importorskip("oras.oci")

pytestmark = [pytest.mark.clients, pytest.mark.core]

SBOM_TYPE = "application/vnd.example.sbom.v1"
SIGNATURE_TYPE = "application/vnd.example.signature.v1"
EMPTY_CONFIG = {"mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2}


@pytest.fixture
def oras(registry: RegistryServer):
    return oras_provider.Registry(hostname=registry.host, insecure=True)


def subject_of(client: httpx.Client, name: str, digest: str):
    """The subject descriptor, from what the registry serves (not from a re-serialised dict)."""
    response = client.get(f"/v2/{name}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert response.status_code == 200, response.text
    return oras_oci.Subject(mediaType=response.headers["Content-Type"], digest=digest,
                            size=len(response.content))


def served_manifest(client: httpx.Client, name: str, reference: str) -> tuple[str, bytes]:
    response = client.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
    assert response.status_code == 200, response.text
    digest = response.headers["Docker-Content-Digest"]
    assert digest == sha256(response.content)
    return digest, response.content


def referrers(client: httpx.Client, name: str, digest: str,
              artifact_type: str | None = None) -> httpx.Response:
    params = {"artifactType": artifact_type} if artifact_type else None
    response = client.get(f"/v2/{name}/referrers/{digest}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].split(";")[0] == OCI_INDEX
    body = response.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    return response


def push_sbom(oras, host: str, tmp_path: Path, name: str, tag: str, subject, payload: bytes) -> str:
    sbom = tmp_path / f"sbom-{tag}.json"
    sbom.write_bytes(payload)
    # oras-py 0.2.43's push() takes a subject but no artifactType: the type goes in the config's
    # mediaType (an empty config), which the referrers API must then report as artifactType.
    response = oras.push(
        target=f"{host}/{name}:{tag}",
        files=[f"{sbom}:application/spdx+json"],
        manifest_config=f"{tmp_path / 'no-config.json'}:{SBOM_TYPE}",
        manifest_annotations={"org.example.kind": "sbom"},
        subject=subject,
        disable_path_validation=True,
    )
    assert response.status_code == 201, response.text
    digest = response.headers["Docker-Content-Digest"]
    assert response.headers.get("OCI-Subject") == subject.digest
    return digest


def test_oras_artifacts_with_subject_and_referrers(registry, oras, client, tmp_path):
    name = f"team/oras/app-{secrets.token_hex(4)}"  # its referrers are checked as a whole
    image = random_image(random.Random(secrets.randbits(32)), layers=2)
    image_digest = push_image(client, name, image, "v1")
    subject = subject_of(client, name, image_digest)
    host = registry.host

    sbom_payload = json.dumps({"spdxVersion": "SPDX-2.3", "id": secrets.token_hex(8)}).encode()
    sbom_digest = push_sbom(oras, host, tmp_path, name, "sbom", subject, sbom_payload)

    # An OCI 1.1 artifact with a top-level artifactType and the empty config. oras-py has no
    # parameter for artifactType, so it is put together with the SDK's lower-level calls:
    # upload_blob (here chunked, several PATCHes) and upload_manifest.
    signature = tmp_path / "signature.bin"
    signature.write_bytes(random.Random(7).randbytes(300_000))
    container = oras.get_container(f"{host}/{name}:sig")
    layer = oras_oci.NewLayer(str(signature), media_type="application/vnd.example.signature.blob")
    layer["annotations"] = {"org.opencontainers.image.title": "signature.bin"}
    assert oras.upload_blob(str(signature), container, layer, do_chunked=True, chunk_size=64 * 1024).ok
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"{}")
    assert oras.upload_blob(str(empty), container, dict(EMPTY_CONFIG)).ok
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_TYPE,
        "config": EMPTY_CONFIG,
        "layers": [layer],
        "subject": {"mediaType": subject.mediaType, "digest": subject.digest, "size": subject.size},
    }
    response = oras.upload_manifest(manifest, container)
    assert response.status_code == 201, response.text
    assert response.headers.get("OCI-Subject") == image_digest
    signature_digest = response.headers["Docker-Content-Digest"]

    # Both are listed, with the descriptors the spec asks for.
    sbom_served = served_manifest(client, name, "sbom")
    signature_served = served_manifest(client, name, "sig")
    assert sbom_served[0] == sbom_digest and signature_served[0] == signature_digest
    listed = referrers(client, name, image_digest)
    assert "OCI-Filters-Applied" not in listed.headers
    found = {d["digest"]: d for d in listed.json()["manifests"]}
    assert found == {
        sbom_digest: {"mediaType": OCI_MANIFEST, "digest": sbom_digest, "size": len(sbom_served[1]),
                      "artifactType": SBOM_TYPE, "annotations": {"org.example.kind": "sbom"}},
        signature_digest: {"mediaType": OCI_MANIFEST, "digest": signature_digest,
                           "size": len(signature_served[1]), "artifactType": SIGNATURE_TYPE},
    }

    # The artifactType filter, and the header that says it was applied.
    for artifact_type, digest in ((SBOM_TYPE, sbom_digest), (SIGNATURE_TYPE, signature_digest)):
        filtered = referrers(client, name, image_digest, artifact_type)
        assert filtered.headers.get("OCI-Filters-Applied") == "artifactType"
        assert [d["digest"] for d in filtered.json()["manifests"]] == [digest]
    nothing = referrers(client, name, image_digest, "application/vnd.example.none")
    assert nothing.headers.get("OCI-Filters-Applied") == "artifactType"
    assert nothing.json()["manifests"] == []

    # Referrers are per repository (another one holding the same image has none), and a digest
    # without referrers gives an empty index, never a 404.
    push_image(client, f"{name}-elsewhere", image, "v1")
    assert referrers(client, f"{name}-elsewhere", image_digest).json()["manifests"] == []
    assert referrers(client, name, sbom_digest).json()["manifests"] == []
    assert referrers(client, name, sha256(b"never pushed")).json()["manifests"] == []

    # Pulled back with the SDK, byte for byte: by digest and by tag.
    out = tmp_path / "pulled"
    files = oras.pull(target=f"{host}/{name}@{sbom_digest}", outdir=str(out))
    assert [Path(f).read_bytes() for f in files] == [sbom_payload]
    pulled = oras.get_manifest(f"{host}/{name}@{sbom_digest}")
    assert pulled["subject"]["digest"] == image_digest
    assert pulled["config"]["mediaType"] == SBOM_TYPE

    files = oras.pull(target=f"{host}/{name}:sig", outdir=str(tmp_path / "pulled-sig"))
    assert len(files) == 1
    assert hashlib.sha256(Path(files[0]).read_bytes()).hexdigest() == layer["digest"].removeprefix("sha256:")
    assert Path(files[0]).read_bytes() == signature.read_bytes()


def test_oras_referrer_pushed_before_its_subject(registry, oras, client, tmp_path):
    """A manifest may name a subject the registry does not hold yet (copy tools push referrers
    and subjects in either order): it is accepted, and listed before and after the subject arrives."""
    name = f"team/oras/early-{secrets.token_hex(4)}"
    image = random_image(random.Random(secrets.randbits(32)), layers=1)
    subject = oras_oci.Subject(mediaType=OCI_MANIFEST, digest=image.digest, size=image.manifest.size)
    payload = secrets.token_bytes(64)
    sbom_digest = push_sbom(oras, registry.host, tmp_path, name, "sbom", subject, payload)

    listed = referrers(client, name, image.digest).json()["manifests"]
    assert [d["digest"] for d in listed] == [sbom_digest]

    push_image(client, name, image, "v1")
    listed = referrers(client, name, image.digest).json()["manifests"]
    assert [d["digest"] for d in listed] == [sbom_digest]
    files = oras.pull(target=f"{registry.host}/{name}:sbom", outdir=str(tmp_path / "out"))
    assert [Path(f).read_bytes() for f in files] == [payload]
