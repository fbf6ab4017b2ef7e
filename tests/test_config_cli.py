"""Settings precedence (flag > environment > TOML > default) and the command line itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dockyard import __version__, config
from tests.server import free_port


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HOST", "PORT", "DATA_DIR", "CONFIG", "DATABASE_URL", "AUTH"):
        monkeypatch.delenv(f"DOCKYARD_{var}", raising=False)
    settings = config.load()
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 5000, Path("data"))
    assert settings.auth == "token"  # private by default: nobody pushes or pulls without a login
    assert settings.database_url == f"sqlite:///{Path('data').resolve() / 'dockyard.db'}"


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "dockyard.toml"
    toml.write_text('host = "127.0.0.2"\nport = 6000\ndata_dir = "/srv/from-toml"\n')
    monkeypatch.setenv("DOCKYARD_PORT", "7000")
    settings = config.load(toml, data_dir="/srv/from-flag")
    assert settings.host == "127.0.0.2"  # only the TOML file sets it
    assert settings.port == 7000  # the environment beats the file
    assert settings.data_dir == Path("/srv/from-flag")  # the flag beats both
    monkeypatch.setenv("DOCKYARD_CONFIG", str(toml))
    assert config.load().host == "127.0.0.2"  # the file can come from the environment too


@pytest.mark.parametrize(
    "content, message",
    [("port = [", "cannot read config"), ("colour = 'blue'\n", "unknown settings"), ("port = 'x'\n", "invalid")],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(content)
    with pytest.raises(config.ConfigError, match=message):
        config.load(toml)


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "dockyard", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"dockyard, version {__version__}"


def test_serve_reads_toml_and_env(tmp_path: Path) -> None:
    port = free_port()
    toml = tmp_path / "dockyard.toml"
    toml.write_text(f'port = {port}\ndata_dir = "{tmp_path / "toml-data"}"\n')
    env = {"PATH": "/usr/bin:/bin", "DOCKYARD_CONFIG": str(toml), "DOCKYARD_DATA_DIR": str(tmp_path / "env-data")}
    proc = subprocess.Popen([sys.executable, "-m", "dockyard", "serve"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        printed = []
        for line in proc.stdout:
            printed.append(line)
            if "listening on" in line:
                break
        # The embedded default has access control on: the first start creates "admin" with a
        # generated password, shown once, and the API asks for a token.
        created = [line for line in printed if "created user 'admin' with password" in line]
        assert len(created) == 1, printed
        password = created[0].split("with password ")[1].split()[0]
        r = httpx.get(f"http://127.0.0.1:{port}/v2/")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer ")
        token = httpx.get(f"http://127.0.0.1:{port}/token", params={"service": "dockyard"}, auth=("admin", password))
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['token']}"}
        assert httpx.get(f"http://127.0.0.1:{port}/v2/", headers=headers).status_code == 200
        assert (tmp_path / "env-data" / "dockyard.db").exists()
        assert not (tmp_path / "toml-data").exists()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("nonsense = 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "dockyard", "serve", "--config", str(toml)], capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "unknown settings" in out.stderr and "Traceback" not in out.stderr
