"""Settings: command-line flag > environment variable > TOML file > embedded default."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "DOCKYARD_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    pass


def _as_bool(value: object) -> bool:
    """Environment variables are strings, and ``bool("false")`` is True."""
    if isinstance(value, str):
        if value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"invalid boolean {value!r}")
    return bool(value)


def _as_names(value: str | Iterable[object]) -> list[str]:
    """A TOML list, a flag given several times, or a comma-separated environment variable."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


@dataclass(slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5000
    data_dir: Path = field(default_factory=lambda: Path("data"))
    database_url: str = ""  # empty: SQLite in the data folder; postgresql://user:pw@host:port/db for PostgreSQL
    database_pool_size: int = 16  # PostgreSQL connections per process (half for writes, half for reads)
    shutdown_timeout: float = 30.0
    tls: bool = False  # serve HTTPS with a certificate from the local CA in <data_dir>/tls
    tls_cert: str = ""  # the operator's own certificate (PEM, chain allowed); implies TLS
    tls_key: str = ""
    tls_names: list[str] = field(default_factory=list)  # extra names/addresses for the local CA's certificate
    auth: str = "token"  # Docker token authentication and per-repository permissions; "none": open
    auth_service: str = "dockyard"  # the token audience, as clients see it in the challenge
    admin_password: str = ""  # the first start creates user "admin" with it (generated when empty)
    # Lifecycle (issue 4). Durations in seconds.
    gc_interval: float = 3600.0  # scheduled garbage collection and retention; 0 disables the schedule
    gc_grace: float = 3600.0  # an unreferenced blob is kept this long after it was last uploaded or checked
    upload_ttl: float = 86400.0  # an upload session idle this long is abandoned and removed
    metrics_port: int = 0  # serve /metrics on its own port as well (0: only on the main port)
    metrics_token: str = ""  # when set, /metrics needs "Authorization: Bearer <token>"
    price_storage_gb_month: float = 0.023  # cost estimates: storage per GB-month (S3 standard's list price)
    price_egress_gb: float = 0.09  # and per GB served
    webhook_timeout: float = 10.0
    webhook_max_attempts: int = 12  # with exponential backoff from 2 s, capped at 10 min
    # Scale-out (issue 6).
    workers: int = 1  # `serve` processes sharing the port (SO_REUSEPORT) under one supervisor
    token_key_file: str = ""  # the token signing key (PEM, EC P-256), e.g. mounted from a Kubernetes Secret
    token_key: str = ""  # the same key as PEM text (DOCKYARD_TOKEN_KEY); both empty: <data_dir>/auth/token.key
    trusted_proxies: list[str] = field(default_factory=list)  # addresses/networks whose X-Forwarded-* count
    # Blob storage: "filesystem" (the data folder) or "s3" (AWS S3 or a compatible store). S3
    # credentials come from boto3's chain (AWS_ACCESS_KEY_ID/..., a profile, an instance or pod role).
    storage: str = "filesystem"
    s3_bucket: str = ""
    s3_endpoint: str = ""  # e.g. http://seaweedfs:8333 for a compatible store; empty: AWS
    s3_region: str = ""  # empty: boto3's default (AWS_REGION, the profile)
    s3_prefix: str = ""  # keys go below this folder of the bucket
    s3_path_style: str = "auto"  # "auto": path-style addressing when an endpoint is set; "true"/"false"
    s3_redirect: bool = False  # blob GETs answer 307 to a presigned URL instead of streaming through
    s3_presign_seconds: float = 600.0  # how long a presigned URL is valid

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.port = int(self.port)
        self.shutdown_timeout = float(self.shutdown_timeout)
        for name in ("gc_interval", "gc_grace", "upload_ttl", "price_storage_gb_month", "price_egress_gb"):
            value = float(getattr(self, name))
            if value < 0:
                raise ConfigError(f"{name} must not be negative")
            setattr(self, name, value)
        self.webhook_timeout = float(self.webhook_timeout)
        self.metrics_port, self.webhook_max_attempts = int(self.metrics_port), int(self.webhook_max_attempts)
        self.tls = _as_bool(self.tls)
        self.tls_cert, self.tls_key = str(self.tls_cert), str(self.tls_key)
        self.tls_names = _as_names(self.tls_names)
        self.workers = int(self.workers)
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        self.token_key_file, self.token_key = str(self.token_key_file), str(self.token_key)
        if self.token_key_file and self.token_key:
            raise ConfigError("token_key_file and token_key are two ways to give one key: give one")
        self.trusted_proxies = _as_names(self.trusted_proxies)
        for network in self.trusted_proxies:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ConfigError(f"trusted_proxies: {exc}") from exc
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key go together: give both or neither")
        if self.auth not in ("none", "token"):
            raise ConfigError(f"auth must be 'none' or 'token', not {self.auth!r}")
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir.resolve() / 'dockyard.db'}"
        self.database_url = str(self.database_url)
        if not self.database_url.startswith(("sqlite://", "postgresql://", "postgres://", "postgresql+psycopg://")):
            raise ConfigError("database_url must be a postgresql:// URL (or sqlite:///PATH)")
        self.database_pool_size = int(self.database_pool_size)
        self.storage = str(self.storage).strip().lower()
        if self.storage not in ("filesystem", "s3"):
            raise ConfigError(f"storage must be 'filesystem' or 's3', not {self.storage!r}")
        self.s3_bucket, self.s3_endpoint = str(self.s3_bucket), str(self.s3_endpoint)
        self.s3_region, self.s3_prefix = str(self.s3_region), str(self.s3_prefix)
        if self.storage == "s3" and not self.s3_bucket:
            raise ConfigError("storage = 's3' needs s3_bucket")
        self.s3_path_style = str(self.s3_path_style).strip().lower()
        if self.s3_path_style != "auto":
            self.s3_path_style = "true" if _as_bool(self.s3_path_style) else "false"
        self.s3_redirect = _as_bool(self.s3_redirect)
        self.s3_presign_seconds = float(self.s3_presign_seconds)
        if not 1 <= self.s3_presign_seconds <= 7 * 86400:  # SigV4 URLs live at most a week
            raise ConfigError("s3_presign_seconds must be between 1 and 604800")
        if self.database_pool_size < 2:
            raise ConfigError("database_pool_size must be at least 2")

    @property
    def tls_enabled(self) -> bool:
        return self.tls or bool(self.tls_cert)


def load(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Merge the sources; ``overrides`` are flag values (None means "not given")."""
    values: dict[str, Any] = {}
    names = {f.name for f in fields(Settings)}
    config_file = config_file or os.environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        try:
            with open(config_file, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {config_file}: {exc}") from exc
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown settings in {config_file}: {', '.join(sorted(unknown))}")
        values.update(data)
    for name in names:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None:
            values[name] = env
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
