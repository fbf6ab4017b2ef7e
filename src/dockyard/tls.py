"""TLS for ``dockyard serve``: a local CA of our own, or the operator's certificate files.

Container clients refuse plain HTTP (and self-signed certificates) unless each machine lists the
registry as insecure. A local CA, generated once in the data folder, lets a client trust every
certificate this registry will ever issue itself by installing one file (``dockyard trust``), and the
server certificate can then be reissued freely, e.g. when the names it must answer to change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockyard.config import Settings

CA_NAME = "dockyard local CA"
CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)
# Certificates start a little in the past so a client whose clock lags still accepts a fresh one.
BACKDATE = dt.timedelta(hours=1)
# Addresses that mean "every interface": no client connects to them, so they name nothing.
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "*"}

Name = x509.DNSName | x509.IPAddress


class TLSError(RuntimeError):
    """TLS cannot be set up as configured (unreadable or mismatched certificate files)."""


def tls_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "tls"


def ca_paths(data_dir: str | Path) -> tuple[Path, Path]:
    folder = tls_dir(data_dir)
    return folder / "ca.crt", folder / "ca.key"


def server_paths(data_dir: str | Path) -> tuple[Path, Path]:
    folder = tls_dir(data_dir)
    return folder / "server.crt", folder / "server.key"


# -- files ---------------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Readers see the old file or the new one, never half of one; a key is never world-readable,
    not even for the moment between creating and chmod-ing it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Two processes starting on one data folder must not each make a CA and sign with the loser."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The certificate and key if both exist, parse and belong together; otherwise None."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.DER, spki) != key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ):
        return None
    return cert, key


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- the local CA --------------------------------------------------------------------------------


def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _ensure_ca_locked(data_dir: str | Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_paths(data_dir)
    pair = _load_pair(cert_path, key_path)
    if pair is not None and pair[0].not_valid_after_utc - _now() > RENEW_BEFORE:
        return pair
    # Missing, unreadable, mismatched or expiring: clients that trusted the old CA must trust this one.
    cert, key = _new_ca()
    _write_atomic(key_path, _key_pem(key), 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def ensure_local_ca(data_dir: str | Path) -> tuple[Path, Path]:
    """The local CA's certificate and key paths, creating the CA on first use and reusing it after."""
    with _locked(tls_dir(data_dir)):
        _ensure_ca_locked(data_dir)
    return ca_paths(data_dir)


# -- the server certificate ----------------------------------------------------------------------


def parse_name(name: str) -> Name:
    """An IP address (``[::1]`` brackets allowed) or a DNS name, in one canonical form so that the
    same names always compare equal to the ones in an existing certificate."""
    text = name.strip().strip("[]")
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not text:
        raise TLSError(f"empty certificate name in {name!r}")
    try:
        return x509.DNSName(text.lower().encode("idna").decode("ascii"))
    except UnicodeError as exc:
        raise TLSError(f"not a valid host name: {name!r}") from exc


def _canonical(names: list[str]) -> list[Name]:
    seen: dict[Name, None] = {}
    for name in names:
        seen.setdefault(parse_name(name), None)
    return list(seen)


def default_names(settings: Settings) -> list[str]:
    """What a client might type to reach this server: loopback, this machine's name, a concrete
    ``--host``, and whatever the operator adds with ``--tls-name`` (e.g. a LAN address or alias)."""
    names = ["localhost", "127.0.0.1", "::1"]
    hostname = socket.gethostname()
    if hostname:
        names.append(hostname)
    if settings.host.strip().strip("[]") not in WILDCARD_HOSTS:
        names.append(settings.host)
    names.extend(settings.tls_names)
    return names


def _sans(cert: x509.Certificate) -> set[Name]:
    try:
        return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return set()


def _still_good(cert: x509.Certificate, ca: x509.Certificate, wanted: list[Name]) -> bool:
    if _sans(cert) != set(wanted) or cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return False
    try:
        cert.verify_directly_issued_by(ca)  # a CA made anew since must reissue it
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _new_server_cert(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: list[Name]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard")]))
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_LIFETIME, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def ensure_server_cert(data_dir: str | Path, names: list[str]) -> tuple[Path, Path]:
    """A server certificate from the local CA for exactly ``names``, reissued when the names change,
    when it expires within 30 days, or when the CA is not the one that signed it."""
    wanted = _canonical(names)
    if not wanted:
        raise TLSError("a server certificate needs at least one name")
    cert_path, key_path = server_paths(data_dir)
    with _locked(tls_dir(data_dir)):
        ca, ca_key = _ensure_ca_locked(data_dir)
        pair = _load_pair(cert_path, key_path)
        if pair is None or not _still_good(pair[0], ca, wanted):
            cert, key = _new_server_cert(ca, ca_key, wanted)
            _write_atomic(key_path, _key_pem(key), 0o600)
            _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def certificate_names(cert_path: str | Path) -> list[str]:
    """The subjectAltName entries of a certificate file, as text (for messages and tests)."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return [str(name.value) for name in _sans(cert)]


# -- the server side -----------------------------------------------------------------------------


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """None for plain HTTP; else TLS 1.2+ with the operator's files or the local CA's certificate."""
    if not settings.tls_enabled:
        return None
    if settings.tls_cert:
        cert_path, key_path = Path(settings.tls_cert), Path(settings.tls_key)
    else:
        cert_path, key_path = ensure_server_cert(settings.data_dir, default_names(settings))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load TLS certificate {cert_path} with key {key_path}: {exc}") from exc
    return context


# -- the client side -----------------------------------------------------------------------------


def covers(cert_path: str | Path, name: str) -> bool:
    """Whether a client reaching the server as ``name`` would accept this certificate (exact names;
    a wildcard entry counts for the names one label below it)."""
    wanted = parse_name(name)
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    for entry in _sans(cert):
        if entry == wanted:
            return True
        if isinstance(entry, x509.DNSName) and isinstance(wanted, x509.DNSName) and entry.value.startswith("*."):
            head, _, rest = wanted.value.partition(".")
            if head and rest == entry.value[2:]:
                return True
    return False


def registry_dir_name(host: str, port: int) -> str:
    """The folder name docker and containers/image look up under ``certs.d``: the registry as it
    appears in image references (``host:port``, IPv6 in brackets, no port for 443)."""
    host = host.strip().strip("[]")
    if ":" in host:
        host = f"[{host}]"
    return host if port == 443 else f"{host}:{port}"


def install_ca(ca_path: str | Path, registry: str, roots: list[str | Path]) -> list[Path]:
    """Copy the CA to ``<root>/<registry>/ca.crt`` for each root; returns the files written."""
    data = Path(ca_path).read_bytes()
    written = []
    for root in roots:
        folder = Path(root) / registry
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "ca.crt"
        _write_atomic(target, data, 0o644)
        written.append(target)
    return written
