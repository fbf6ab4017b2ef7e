"""TLS: the local CA and its server certificate, ``serve --tls``, ``dockyard trust``, and real
clients that verify the certificate (no ``--tls-verify=false``, no "insecure" registries.conf)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import random
import secrets
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockyard import config, tls
from tests.clients import Podman, require, run
from tests.images import random_image, read_layout, tar_bytes, write_layout
from tests.server import RegistryServer


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(path: Path) -> set[str]:
    return set(tls.certificate_names(path))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def dockyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dockyard", *args], capture_output=True, text=True, timeout=60)


# -- the local CA and the server certificate -----------------------------------------------------


def test_local_ca_is_created_once_and_reused(tmp_path: Path) -> None:
    cert_path, key_path = tls.ensure_local_ca(tmp_path)
    assert (cert_path, key_path) == (tmp_path / "tls" / "ca.crt", tmp_path / "tls" / "ca.key")
    assert mode(key_path) == 0o600
    first = (cert_path.read_bytes(), key_path.read_bytes())
    assert tls.ensure_local_ca(tmp_path) == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == first

    ca = load_cert(cert_path)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dockyard local CA"
    assert ca.subject == ca.issuer
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert dt.timedelta(days=3649) < lifetime < dt.timedelta(days=3652)


def test_server_cert_names_usage_and_reuse(tmp_path: Path) -> None:
    names = ["localhost", "127.0.0.1", "::1", "registry.lan", "192.168.1.20"]
    cert_path, key_path = tls.ensure_server_cert(tmp_path, names)
    assert mode(key_path) == 0o600
    assert sans(cert_path) == {"localhost", "127.0.0.1", "::1", "registry.lan", "192.168.1.20"}
    cert = load_cert(cert_path)
    ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress)
    assert ipaddress.ip_address("::1") in ips  # an IP address entry, not a DNS name that looks like one
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(load_cert(tmp_path / "tls" / "ca.crt"))
    assert dt.timedelta(days=360) < cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=366)

    before = cert_path.read_bytes(), key_path.read_bytes()
    # The same names in another order, case or spelling: nothing to reissue.
    tls.ensure_server_cert(tmp_path, ["REGISTRY.lan", "[::1]", "192.168.1.20", "127.0.0.1", "localhost", "localhost"])
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


def test_server_cert_reissued_when_names_change(tmp_path: Path) -> None:
    ca_before = tls.ensure_local_ca(tmp_path)[0].read_bytes()
    cert_path, _ = tls.ensure_server_cert(tmp_path, ["localhost", "127.0.0.1"])
    old = cert_path.read_bytes()
    tls.ensure_server_cert(tmp_path, ["localhost", "127.0.0.1", "10.0.0.7"])
    assert cert_path.read_bytes() != old
    assert sans(cert_path) == {"localhost", "127.0.0.1", "10.0.0.7"}
    assert (tmp_path / "tls" / "ca.crt").read_bytes() == ca_before  # clients keep trusting it
    tls.ensure_server_cert(tmp_path, ["localhost"])  # fewer names is a change too
    assert sans(cert_path) == {"localhost"}


def test_server_cert_renewed_within_30_days_of_expiry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "SERVER_LIFETIME", dt.timedelta(days=20))
    cert_path, _ = tls.ensure_server_cert(tmp_path, ["localhost"])
    short = load_cert(cert_path)
    monkeypatch.setattr(tls, "SERVER_LIFETIME", dt.timedelta(days=365))
    tls.ensure_server_cert(tmp_path, ["localhost"])
    assert load_cert(cert_path).not_valid_after_utc > short.not_valid_after_utc + dt.timedelta(days=300)


def test_server_cert_reissued_for_a_new_ca(tmp_path: Path) -> None:
    cert_path, _ = tls.ensure_server_cert(tmp_path, ["localhost"])
    (tmp_path / "tls" / "ca.key").unlink()  # a lost CA key: a new CA, and its own server certificate
    tls.ensure_server_cert(tmp_path, ["localhost"])
    load_cert(cert_path).verify_directly_issued_by(load_cert(tmp_path / "tls" / "ca.crt"))


def test_default_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls.socket, "gethostname", lambda: "buildbox")
    names = tls.default_names(config.Settings(host="0.0.0.0", tls_names=["registry.lan", "10.1.2.3"]))
    assert names == ["localhost", "127.0.0.1", "::1", "buildbox", "registry.lan", "10.1.2.3"]
    assert "192.168.1.9" in tls.default_names(config.Settings(host="192.168.1.9"))
    assert "::" not in tls.default_names(config.Settings(host="::"))


def test_ssl_context_only_with_tls(tmp_path: Path) -> None:
    assert tls.server_ssl_context(config.Settings(data_dir=tmp_path)) is None
    context = tls.server_ssl_context(config.Settings(data_dir=tmp_path, tls=True))
    assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert (tmp_path / "tls" / "server.crt").exists()
    with pytest.raises(tls.TLSError, match="cannot load TLS certificate"):
        tls.server_ssl_context(config.Settings(data_dir=tmp_path, tls_cert=str(tmp_path / "nope.crt"),
                                               tls_key=str(tmp_path / "nope.key")))


# -- settings ------------------------------------------------------------------------------------


def test_tls_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CONFIG", "TLS", "TLS_CERT", "TLS_KEY", "TLS_NAMES"):
        monkeypatch.delenv(f"DOCKYARD_{var}", raising=False)
    settings = config.load()
    assert (settings.tls, settings.tls_cert, settings.tls_key, settings.tls_names) == (False, "", "", [])
    assert not settings.tls_enabled

    toml = tmp_path / "dockyard.toml"
    toml.write_text('tls = true\ntls_names = ["registry.lan", "10.0.0.5"]\n')
    assert config.load(toml).tls_names == ["registry.lan", "10.0.0.5"]
    assert config.load(toml).tls is True
    monkeypatch.setenv("DOCKYARD_TLS_NAMES", "a.lan, 10.0.0.6,")
    assert config.load(toml).tls_names == ["a.lan", "10.0.0.6"]  # the environment beats the file
    assert config.load(toml, tls_names=["b.lan"]).tls_names == ["b.lan"]  # the flag beats both
    monkeypatch.setenv("DOCKYARD_TLS", "false")
    assert config.load(toml).tls is False
    assert config.load(toml, tls=True).tls is True
    monkeypatch.setenv("DOCKYARD_TLS", "maybe")
    with pytest.raises(config.ConfigError, match="invalid boolean"):
        config.load(toml)


@pytest.mark.parametrize("given", [{"tls_cert": "server.crt"}, {"tls_key": "server.key"}])
def test_tls_cert_and_key_go_together(given: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CONFIG", "TLS_CERT", "TLS_KEY"):
        monkeypatch.delenv(f"DOCKYARD_{var}", raising=False)
    with pytest.raises(config.ConfigError, match="tls_cert and tls_key"):
        config.load(**given)
    assert config.load(tls_cert="server.crt", tls_key="server.key").tls_enabled  # the files imply TLS


def test_serve_refuses_half_a_pair_and_bad_files(tmp_path: Path) -> None:
    out = dockyard("serve", "--data-dir", str(tmp_path / "d"), "--tls-cert", str(tmp_path / "x.crt"))
    assert out.returncode != 0
    assert "tls_cert and tls_key" in out.stderr and "Traceback" not in out.stderr

    (tmp_path / "bad.crt").write_text("not a certificate\n")
    (tmp_path / "bad.key").write_text("not a key\n")
    out = dockyard("serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--tls-cert", str(tmp_path / "bad.crt"),
                   "--tls-key", str(tmp_path / "bad.key"))
    assert out.returncode != 0
    assert "cannot load TLS certificate" in out.stderr and "Traceback" not in out.stderr, out.stderr


# -- a real server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = RegistryServer(tmp_path_factory.mktemp("tls-registry") / "data",
                            extra_args=["--tls", "--tls-name", "registry.test"]).start()
    yield server
    server.stop()


def test_serve_tls_with_the_local_ca(tls_registry: RegistryServer) -> None:
    assert tls_registry.url.startswith("https://")
    response = httpx.get(tls_registry.url + "/v2/", verify=tls_registry.ssl_context(), timeout=10)
    assert response.status_code == 200
    assert f"listening on https://127.0.0.1:{tls_registry.port}" in tls_registry.log()
    assert "registry.test" in sans(tls_registry.data_dir / "tls" / "server.crt")

    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(tls_registry.url + "/v2/", timeout=10)  # the machine's CAs know nothing of it
    with pytest.raises(httpx.HTTPError):  # and plain HTTP gets no registry
        httpx.get(f"http://{tls_registry.host}/v2/", timeout=10)


def test_serve_tls_restart_keeps_the_certificates(tmp_path: Path) -> None:
    server = RegistryServer(tmp_path / "data", extra_args=["--tls"]).start()
    try:
        folder = server.data_dir / "tls"
        before = {name: (folder / name).read_bytes() for name in ("ca.crt", "ca.key", "server.crt", "server.key")}
        server.restart()
        assert {name: (folder / name).read_bytes() for name in before} == before
        assert httpx.get(server.url + "/v2/", verify=server.ssl_context(), timeout=10).status_code == 200
    finally:
        server.stop()


def self_signed(folder: Path, names: list[str]) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator's own")])
    now = dt.datetime.now(dt.UTC)
    alt = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names]
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "own.crt", folder / "own.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_serve_with_the_operators_certificate(tmp_path: Path) -> None:
    cert_path, key_path = self_signed(tmp_path, ["127.0.0.1", "localhost"])
    server = RegistryServer(tmp_path / "data", extra_args=["--tls-cert", str(cert_path), "--tls-key", str(key_path)],
                            ca=cert_path).start()
    try:
        assert httpx.get(server.url + "/v2/", verify=server.ssl_context(), timeout=10).status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(server.url + "/v2/", timeout=10)
        assert not (server.data_dir / "tls").exists()  # no local CA when the operator brings a certificate
    finally:
        server.stop()


def test_serve_tls_from_the_environment(tmp_path: Path) -> None:
    server = RegistryServer(tmp_path / "data", env={"DOCKYARD_TLS": "1", "DOCKYARD_TLS_NAMES": "env.lan,10.9.8.7"},
                            tls=True).start()
    try:
        assert httpx.get(server.url + "/v2/", verify=server.ssl_context(), timeout=10).status_code == 200
        assert {"env.lan", "10.9.8.7"} <= sans(server.data_dir / "tls" / "server.crt")
    finally:
        server.stop()


# -- dockyard trust ------------------------------------------------------------------------------


def test_trust_prints_and_installs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    printed = dockyard("trust", "--data-dir", str(data))
    assert printed.returncode == 0, printed.stderr
    ca = (data / "tls" / "ca.crt").read_text()
    assert printed.stdout == ca and ca.startswith("-----BEGIN CERTIFICATE-----")

    docker_root, containers_root = tmp_path / "docker-certs.d", tmp_path / "containers-certs.d"
    out = dockyard("trust", "--data-dir", str(data), "--host", "registry.lan", "--port", "5443", "--install",
                   "--docker-certs-dir", str(docker_root), "--containers-certs-dir", str(containers_root))
    assert out.returncode == 0, out.stderr
    assert out.stdout == ca
    for root in (docker_root, containers_root):
        installed = root / "registry.lan:5443" / "ca.crt"
        assert installed.read_text() == ca
        assert str(installed) in out.stderr

    out = dockyard("trust", "--data-dir", str(data), "--host", "registry.lan", "--port", "443", "--install",
                   "--docker-certs-dir", str(docker_root), "--containers-certs-dir", str(containers_root))
    assert out.returncode == 0, out.stderr
    assert (docker_root / "registry.lan" / "ca.crt").read_text() == ca  # port 443 is left out of references


def test_trust_warns_about_a_name_the_certificate_lacks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tls.ensure_server_cert(data, ["localhost", "127.0.0.1"])
    args = ["trust", "--data-dir", str(data), "--install", "--docker-certs-dir", str(tmp_path / "a"),
            "--containers-certs-dir", str(tmp_path / "b")]
    assert "does not name" not in dockyard(*args, "--host", "127.0.0.1").stderr
    assert "--tls-name elsewhere.lan" in dockyard(*args, "--host", "elsewhere.lan").stderr


# -- real clients verifying the certificate ------------------------------------------------------


def install_trust(registry: RegistryServer, home: Path) -> Path:
    """``dockyard trust --install`` into ``home``'s containers/image certs.d (which podman and skopeo
    read before /etc/containers/certs.d); returns the registry's folder in it."""
    certs_d = home / ".config" / "containers" / "certs.d"
    out = dockyard("trust", "--data-dir", str(registry.data_dir), "--host", "127.0.0.1", "--port",
                   str(registry.port), "--install", "--containers-certs-dir", str(certs_d),
                   "--docker-certs-dir", str(home / "docker-certs.d"))
    assert out.returncode == 0, out.stderr
    folder = certs_d / registry.host
    assert (folder / "ca.crt").exists()
    return folder


@pytest.mark.clients
def test_skopeo_over_verified_tls(tls_registry: RegistryServer, tmp_path: Path) -> None:
    skopeo = require("skopeo")
    rng = random.Random(secrets.randbits(32))
    image = random_image(rng, layers=2)
    source = write_layout(tmp_path / "source", "v1", image)
    ref = f"docker://{tls_registry.host}/team/tls/skopeo:v1"
    certs = install_trust(tls_registry, tmp_path / "home")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "nohome")}

    refused = run([skopeo, "--insecure-policy", "copy", f"oci:{source}:v1", ref], env=env, check=False)
    assert refused.returncode != 0
    assert "certificate signed by unknown authority" in refused.stderr, refused.stderr

    run([skopeo, "--insecure-policy", "copy", "--preserve-digests", "--dest-cert-dir", str(certs),
         f"oci:{source}:v1", ref], env=env, registry=tls_registry)
    # No flag at all: skopeo finds the CA under $HOME by the registry's host:port.
    home_env = {**env, "HOME": str(tmp_path / "home")}
    raw = run([skopeo, "--insecure-policy", "inspect", "--raw", ref], env=home_env, registry=tls_registry)
    assert raw.stdout.encode() == image.manifest.data
    back = tmp_path / "back"
    run([skopeo, "--insecure-policy", "copy", "--preserve-digests", "--src-tls-verify=true", ref, f"oci:{back}:v1"],
        env=home_env, registry=tls_registry)
    assert read_layout(back).blob(image.digest) == image.manifest.data


@pytest.mark.clients
def test_podman_push_pull_over_verified_tls(tls_registry: RegistryServer, tmp_path: Path) -> None:
    require("podman")
    podman = Podman(tmp_path / "podman", tls_registry, insecure=False)
    try:
        podman.check_isolated()
        token = secrets.token_hex(16)
        rootfs = tmp_path / "rootfs.tar"
        rootfs.write_bytes(tar_bytes({"etc/dockyard-token": token.encode()}))
        image = f"{tls_registry.host}/team/tls/podman:1"
        podman("import", str(rootfs), image)

        podman.env["HOME"] = str(tmp_path / "empty-home")
        refused = podman("push", image, check=False)
        assert refused.returncode != 0
        assert "certificate signed by unknown authority" in refused.stderr, refused.stderr

        # podman looks the CA up by host:port in $HOME/.config/containers/certs.d, as it does in
        # /etc/containers/certs.d: the layout `dockyard trust --install` writes.
        podman.env["HOME"] = str(tmp_path / "home")
        certs = install_trust(tls_registry, tmp_path / "home")
        digest_file = tmp_path / "push.digest"
        podman("push", "--tls-verify=true", "--digestfile", str(digest_file), image)
        digest = digest_file.read_text().strip()
        served = httpx.get(f"{tls_registry.url}/v2/team/tls/podman/manifests/1", verify=tls_registry.ssl_context(),
                           headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=60)
        assert served.status_code == 200 and served.headers["Docker-Content-Digest"] == digest

        podman("rmi", image)
        podman.env["HOME"] = str(tmp_path / "empty-home")
        podman("pull", "--cert-dir", str(certs), image)  # the explicit flag works as well
        inspected = json.loads(podman("image", "inspect", image).stdout)[0]
        assert inspected["Digest"] == digest
    finally:
        podman.cleanup()
