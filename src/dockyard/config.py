"""Settings: command-line flag > environment variable > TOML file > embedded default."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "DOCKYARD_"


@dataclass(slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5000
    data_dir: Path = field(default_factory=lambda: Path("data"))
    database_url: str = ""  # empty: SQLite in the data folder
    shutdown_timeout: float = 30.0

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.port = int(self.port)
        self.shutdown_timeout = float(self.shutdown_timeout)
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir.resolve() / 'dockyard.db'}"


class ConfigError(ValueError):
    pass


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
