"""Real clients logging in to dockyard with token authentication on, then pushing and pulling.

Each test's registry runs ``dockyard serve`` with ``DOCKYARD_AUTH=token``; users are made
with the ``dockyard user add`` admin command. alice owns the ``alice/`` namespace, bob owns
``bob/``. Credentials only ever go to files under the tests' temporary folders (``--authfile``,
``DOCKER_CONFIG``, a temporary ``HOME``), never to the machine's own.
"""

from __future__ import annotations

import json
import random
import secrets
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients import Podman, make_rootfs, require, run, static_busybox
from tests.images import (
    OCI_MANIFEST,
    Image,
    random_image,
    read_layout,
    sha256,
    write_layout,
)
from tests.server import RegistryServer

pytestmark = pytest.mark.clients

ADMIN_PASSWORD = "admin-" + secrets.token_hex(8)
ALICE_PASSWORD = "alice-" + secrets.token_hex(8)
BOB_PASSWORD = "bob-" + secrets.token_hex(8)
MANIFEST_ACCEPT = f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"


class AuthRegistry:
    """A token-auth registry process and its admin commands."""

    def __init__(self, server: RegistryServer) -> None:
        self.server = server

    @property
    def host(self) -> str:
        return self.server.host

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "dockyard", *args, "--data-dir", str(self.server.data_dir)],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        return out.stdout

    def admin(self, name: str) -> httpx.Client:
        """An httpx client with an admin token that may pull and push ``name``."""
        r = httpx.get(f"{self.server.url}/token", params={"service": "dockyard",
                                                          "scope": f"repository:{name}:pull,push"},
                      auth=("admin", ADMIN_PASSWORD), verify=self.server.verify, timeout=60)
        assert r.status_code == 200, r.text
        return httpx.Client(base_url=self.server.url, verify=self.server.verify, timeout=60,
                            headers={"Authorization": f"Bearer {r.json()['token']}"})

    def manifest(self, name: str, reference: str) -> httpx.Response:
        with self.admin(name) as c:
            return c.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})


def start_auth_registry(data_dir: Path, extra_args: list[str] | None = None) -> AuthRegistry:
    server = RegistryServer(data_dir, extra_args=extra_args,
                            env={"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD}).start()
    registry = AuthRegistry(server)
    try:
        registry.cli("user", "add", "alice", "--password", ALICE_PASSWORD)
        registry.cli("user", "add", "bob", "--password", BOB_PASSWORD)
    except BaseException:
        server.stop()
        raise
    return registry


# Each test has a registry of its own: the server locks a client address out for a while after 10
# failed logins in a minute, and every client here is 127.0.0.1, so the wrong-password checks of
# one test would otherwise lock the next test out.


@pytest.fixture
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    registry = start_auth_registry(tmp_path_factory.mktemp("auth-clients") / "data")
    yield registry
    registry.server.stop()


@pytest.fixture(scope="module")
def busybox() -> Path:
    return static_busybox()


def isolate_credentials(podman: Podman, home: Path) -> Path:
    """Point every place podman (and its service) looks for credentials into ``home``; returns the
    auth file the tests pass with ``--authfile``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "docker").mkdir(exist_ok=True)
    for env in (podman.env, podman.docker_env):
        env["HOME"] = str(home)
        env["XDG_CONFIG_HOME"] = str(home / ".config")
        # The default auth file (of the CLI and of the service behind the docker socket).
        env["REGISTRY_AUTH_FILE"] = str(home / "default-auth.json")
    podman.env["DOCKER_CONFIG"] = str(home / "docker")  # containers/image reads it as a fallback
    for name in ("default-auth.json", "auth.json"):  # podman refuses an --authfile that does not exist
        (home / name).write_text('{"auths": {}}\n')
    return home / "auth.json"


@pytest.fixture
def podman_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short folder for podman's storage and run state. Under a long path (a test's own
    tmp_path, about 45 characters and more) podman 4.3 never removes a ``--rm`` container that the
    docker CLI ran through its service: the container exits, no cleanup follows, and
    ``docker run --rm`` waits forever."""
    return tmp_path_factory.mktemp("pm")


@pytest.fixture
def podman(auth_registry: AuthRegistry, podman_base: Path) -> Iterator[Podman]:
    require("podman")
    env = Podman(podman_base, auth_registry.server)
    try:
        env.check_isolated()
        yield env
    finally:
        env.cleanup()


def authfile_hosts(path: Path) -> set[str]:
    return set(json.loads(path.read_text()).get("auths", {})) if path.exists() else set()


def denied(result: subprocess.CompletedProcess[str]) -> bool:
    text = (result.stdout + result.stderr).lower()
    return result.returncode != 0 and any(w in text for w in ("unauthorized", "denied", "authentication required"))


# -- podman ----------------------------------------------------------------------------------------


def test_podman_login_with_a_wrong_password_fails(podman: Podman, auth_registry: AuthRegistry, tmp_path: Path):
    authfile = isolate_credentials(podman, tmp_path / "home")
    host = auth_registry.host
    for user, password in (("alice", "not-" + ALICE_PASSWORD), ("nobody", ALICE_PASSWORD)):
        result = podman("login", "--tls-verify=false", "--authfile", str(authfile), "-u", user, "-p", password,
                        host, check=False)
        assert result.returncode != 0, result.stdout
        assert "unauthorized" in result.stderr.lower() or "invalid username/password" in result.stderr.lower(), \
            result.stderr
        assert host not in authfile_hosts(authfile)
    got = podman("login", "--get-login", "--authfile", str(authfile), host, check=False)
    assert got.returncode != 0


def test_podman_login_push_pull_run_logout_and_visibility(podman: Podman, auth_registry: AuthRegistry,
                                                          busybox: Path, tmp_path: Path):
    authfile = isolate_credentials(podman, tmp_path / "home")
    host = auth_registry.host
    tarball, token = make_rootfs(tmp_path, busybox)
    image = f"{host}/alice/app:1"
    podman("import", str(tarball), image)

    # Not logged in: the push is refused and nothing lands in the repository.
    refused = podman("push", "--tls-verify=false", "--authfile", str(authfile), image, check=False)
    assert denied(refused), refused.stderr
    assert auth_registry.manifest("alice/app", "1").status_code == 404

    login = podman("login", "--tls-verify=false", "--authfile", str(authfile), "-u", "alice", "-p", ALICE_PASSWORD,
                   host)
    assert "Login Succeeded" in login.stdout, login.stdout
    assert authfile_hosts(authfile) == {host}
    assert podman("login", "--get-login", "--authfile", str(authfile), host).stdout.strip() == "alice"

    digest_file = tmp_path / "push.digest"
    podman("push", "--tls-verify=false", "--authfile", str(authfile), "--digestfile", str(digest_file), image)
    digest = digest_file.read_text().strip()
    served = auth_registry.manifest("alice/app", "1")
    assert served.status_code == 200, served.text
    assert served.headers["Docker-Content-Digest"] == digest == sha256(served.content)

    podman("rmi", image)
    podman("pull", "--tls-verify=false", "--authfile", str(authfile), image)
    assert podman("image", "inspect", "--format", "{{.Digest}}", image).stdout.strip() == digest
    assert podman("run", "--rm", image, "/bin/cat", "/etc/dockyard-token").stdout == token

    # bob's namespace is not alice's to push to.
    other = f"{host}/bob/app:1"
    podman("tag", image, other)
    refused = podman("push", "--tls-verify=false", "--authfile", str(authfile), other, check=False)
    assert denied(refused), refused.stderr
    assert auth_registry.manifest("bob/app", "1").status_code == 404

    # Logged out, the private repository cannot be pulled...
    podman("logout", "--authfile", str(authfile), host)
    assert host not in authfile_hosts(authfile)
    podman("rmi", image, other)
    refused = podman("pull", "--tls-verify=false", "--authfile", str(authfile), image, check=False)
    assert denied(refused), refused.stderr
    assert podman("image", "exists", image, check=False).returncode == 1

    # ...until it is made public: then anyone may pull it, still without logging in.
    auth_registry.cli("repo", "visibility", "alice/app", "public")
    podman("pull", "--tls-verify=false", "--authfile", str(authfile), image)
    assert podman("image", "inspect", "--format", "{{.Digest}}", image).stdout.strip() == digest
    assert podman("run", "--rm", image, "/bin/cat", "/etc/dockyard-token").stdout == token
    # Public is read-only for strangers: an anonymous push is still refused.
    refused = podman("push", "--tls-verify=false", "--authfile", str(authfile), image, f"docker://{host}/alice/app:2",
                     check=False)
    assert denied(refused), refused.stderr
    assert auth_registry.manifest("alice/app", "2").status_code == 404


# -- skopeo ----------------------------------------------------------------------------------------


@pytest.fixture
def skopeo(auth_registry: AuthRegistry, tmp_path: Path):
    binary = require("skopeo")
    home = tmp_path / "skopeo-home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "DOCKER_CONFIG": str(home / "docker"), "REGISTRY_AUTH_FILE": str(home / "default-auth.json")}

    def call(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([binary, "--insecure-policy", *args], env=env, registry=auth_registry.server, check=check)

    return call


def assert_same_image(layout_dir: Path, image: Image) -> None:
    layout = read_layout(layout_dir)
    assert layout.descriptor()["digest"] == image.digest
    assert layout.blob(image.digest) == image.manifest.data
    for blob in image.blobs:
        assert layout.blob(blob.digest) == blob.data


def test_skopeo_login_creds_and_dest_creds_round_trip(skopeo, auth_registry: AuthRegistry, tmp_path: Path):
    host = auth_registry.host
    image = random_image(random.Random(secrets.randbits(32)), layers=2)
    source = write_layout(tmp_path / "source", "v1", image)
    authfile = tmp_path / "auth.json"

    # skopeo login, then a copy that takes its credentials from the auth file.
    skopeo("login", "--tls-verify=false", "--authfile", str(authfile), "-u", "alice", "-p", ALICE_PASSWORD, host)
    assert authfile_hosts(authfile) == {host}
    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", "--authfile", str(authfile),
           f"oci:{source}:v1", f"docker://{host}/alice/skopeo-login:v1")
    skopeo("copy", "--src-tls-verify=false", "--authfile", str(authfile),
           f"docker://{host}/alice/skopeo-login:v1", f"oci:{tmp_path / 'back-login'}:v1")
    assert_same_image(tmp_path / "back-login", image)
    skopeo("logout", "--authfile", str(authfile), host)
    assert host not in authfile_hosts(authfile)

    # --dest-creds / --src-creds / --creds, no auth file at all.
    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", f"alice:{ALICE_PASSWORD}",
           f"oci:{source}:v1", f"docker://{host}/alice/skopeo-creds:v1")
    raw = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", f"alice:{ALICE_PASSWORD}",
                 f"docker://{host}/alice/skopeo-creds:v1")
    assert raw.stdout.encode() == image.manifest.data
    skopeo("copy", "--src-tls-verify=false", "--src-creds", f"alice:{ALICE_PASSWORD}",
           f"docker://{host}/alice/skopeo-creds:v1", f"oci:{tmp_path / 'back-creds'}:v1")
    assert_same_image(tmp_path / "back-creds", image)
    served = auth_registry.manifest("alice/skopeo-creds", "v1")
    assert served.status_code == 200 and served.content == image.manifest.data

    # A registry-to-registry copy with both sides' credentials.
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", f"alice:{ALICE_PASSWORD}",
           "--dest-creds", f"alice:{ALICE_PASSWORD}", f"docker://{host}/alice/skopeo-creds:v1",
           f"docker://{host}/alice/skopeo-copied:v1")
    assert auth_registry.manifest("alice/skopeo-copied", "v1").content == image.manifest.data


def test_skopeo_wrong_credentials_fail(skopeo, auth_registry: AuthRegistry, tmp_path: Path):
    host = auth_registry.host
    image = random_image(random.Random(secrets.randbits(32)), layers=1)
    source = write_layout(tmp_path / "source", "v1", image)
    authfile = tmp_path / "auth.json"
    wrong = f"alice:not-{ALICE_PASSWORD}"

    login = skopeo("login", "--tls-verify=false", "--authfile", str(authfile), "-u", "alice", "-p",
                   "not-" + ALICE_PASSWORD, host, check=False)
    assert login.returncode != 0 and host not in authfile_hosts(authfile)
    pushed = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", wrong, f"oci:{source}:v1",
                    f"docker://{host}/alice/skopeo-wrong:v1", check=False)
    assert denied(pushed), pushed.stderr
    assert auth_registry.manifest("alice/skopeo-wrong", "v1").status_code == 404

    # With the right password but someone else's namespace: refused as well.
    pushed = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"bob:{BOB_PASSWORD}", f"oci:{source}:v1",
                    f"docker://{host}/alice/skopeo-wrong:v1", check=False)
    assert denied(pushed), pushed.stderr
    assert auth_registry.manifest("alice/skopeo-wrong", "v1").status_code == 404

    # A private image: wrong credentials and no credentials read nothing.
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"alice:{ALICE_PASSWORD}", f"oci:{source}:v1",
           f"docker://{host}/alice/skopeo-private:v1")
    for creds in (["--creds", wrong], ["--creds", f"bob:{BOB_PASSWORD}"], ["--no-creds"]):
        read = skopeo("inspect", "--raw", "--tls-verify=false", *creds, f"docker://{host}/alice/skopeo-private:v1",
                      check=False)
        assert denied(read), (creds, read.stderr)


# -- the docker CLI through podman's Docker-compatible API ----------------------------------------


def docker_login_push_pull(podman: Podman, registry: AuthRegistry, address: str, busybox: Path,
                           tmp_path: Path) -> None:
    """``docker login ADDRESS`` through the podman service, then push, rmi, pull, run and logout.

    ``docker login`` goes to the service (``POST /auth``), which checks the credentials against the
    registry; the CLI keeps them in $DOCKER_CONFIG/config.json and sends them with each push and
    pull (``X-Registry-Auth``), and the service does the registry calls."""
    config_json = Path(podman.docker_env["DOCKER_CONFIG"]) / "config.json"
    docker = podman.docker
    tarball, token = make_rootfs(tmp_path, busybox)
    local = f"localhost/dockyard-test/auth-busybox:{secrets.token_hex(4)}"
    name = f"alice/docker-{secrets.token_hex(4)}"
    image = f"{address}/{name}:1"
    podman("import", str(tarball), local)  # the same storage as the service's

    wrong = docker("login", "-u", "alice", "-p", "not-" + ALICE_PASSWORD, address, check=False)
    assert wrong.returncode != 0, wrong.stdout
    assert "unauthorized" in wrong.stderr.lower(), wrong.stderr
    assert address not in authfile_hosts(config_json)

    login = docker("login", "-u", "alice", "-p", ALICE_PASSWORD, address)
    assert "Login Succeeded" in login.stdout, login.stdout
    assert address in authfile_hosts(config_json)

    docker("tag", local, image)
    docker("push", image)
    served = registry.manifest(name, "1")
    assert served.status_code == 200, served.text
    digest = served.headers["Docker-Content-Digest"]

    docker("rmi", image, local)
    docker("pull", image)
    inspected = json.loads(docker("image", "inspect", image).stdout)[0]
    assert f"{address}/{name}@{digest}" in inspected["RepoDigests"]
    assert docker("run", "--rm", image, "/bin/cat", "/etc/dockyard-token").stdout == token

    # bob's namespace is not alice's.
    docker("tag", image, f"{address}/bob/docker:1")
    refused = docker("push", f"{address}/bob/docker:1", check=False)
    assert denied(refused), refused.stderr
    assert registry.manifest("bob/docker", "1").status_code == 404

    # Logged out, the CLI sends no credentials and the private repository stays closed.
    docker("logout", address)
    assert address not in authfile_hosts(config_json)
    docker("rmi", image, f"{address}/bob/docker:1")
    refused = docker("pull", image, check=False)
    assert denied(refused), refused.stderr


def test_docker_cli_login_push_pull(podman: Podman, auth_registry: AuthRegistry, busybox: Path, tmp_path: Path):
    """Plain HTTP. podman's ``POST /auth`` handler (podman 4.3, and upstream still) checks the
    credentials with TLS verification forced on for every address except ``localhost:PORT``,
    whatever registries.conf says; so ``docker login 127.0.0.1:PORT`` fails on plain HTTP before
    it reaches the credentials (with "http: server gave HTTP response to HTTPS client"), while
    push and pull to that address work. The test logs in, pushes and pulls as ``localhost:PORT``
    (localhost is 127.0.0.1 here), which registries.conf also marks insecure."""
    require("docker")
    isolate_credentials(podman, tmp_path / "home")
    address = f"localhost:{auth_registry.server.port}"
    with (podman.base / "registries.conf").open("a") as conf:
        conf.write(f"\n[[registry]]\nlocation = {json.dumps(address)}\ninsecure = true\n")
    podman.start_service()

    by_ip = podman.docker("login", "-u", "alice", "-p", ALICE_PASSWORD, auth_registry.host, check=False)
    if by_ip.returncode != 0:  # the podman limitation above; anything else is a failure
        assert "server gave HTTP response to HTTPS client" in by_ip.stderr, by_ip.stderr
    podman.docker("logout", auth_registry.host, check=False)

    docker_login_push_pull(podman, auth_registry, address, busybox, tmp_path)


# -- oras (the Python SDK) -------------------------------------------------------------------------


@pytest.fixture
def oras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """oras-py reads ~/.docker/config.json besides the config it is given: keep ~ in tmp_path."""
    pytest.importorskip("oras.provider", reason="the oras SDK comes with the test extras")
    home = tmp_path / "oras-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ORAS_USER", raising=False)
    monkeypatch.delenv("ORAS_PASS", raising=False)
    # Failures are retried with sleeps of 3 s to 83 s; an expected refusal need not wait for them.
    import oras.decorator

    monkeypatch.setattr(oras.decorator, "time", types.SimpleNamespace(sleep=lambda seconds: None))
    return home


def oras_registry(host: str, *, scope_fix: bool = True):
    """An oras-py client for ``host`` over plain HTTP.

    oras-py 0.2.43 caches the first bearer token it gets and, on a later 401, retries with that
    same token (it asks for a new one only after a 403). A push starts with a blob HEAD, whose
    challenge asks for ``pull``; the upload POST then gets 401 ``error="insufficient_scope"``
    (as from Distribution) and fails (oras-project/oras-py#187). With ``scope_fix`` the client
    drops its cached token on such an answer and asks for the scope the challenge names, as
    docker, podman and skopeo do."""
    import oras.auth
    import oras.provider

    client = oras.provider.Registry(hostname=host, insecure=True)
    if scope_fix:
        assert isinstance(client.auth, oras.auth.TokenAuth)
        original = client.auth.authenticate_request

        def authenticate_request(response, headers, refresh=False):
            challenge = response.headers.get("Www-Authenticate", "")
            return original(response, headers, refresh=refresh or 'error="insufficient_scope"' in challenge)

        client.auth.authenticate_request = authenticate_request
    return client


@pytest.mark.xfail(reason="oras-py 0.2.43 reuses its pull-only token for the upload (oras-project/oras-py#187)",
                   raises=ValueError, strict=False)
def test_oras_push_without_the_scope_fix(auth_registry: AuthRegistry, oras_home: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch):
    host = auth_registry.host
    config = tmp_path / "oras-config.json"
    (tmp_path / "payload.bin").write_bytes(secrets.token_bytes(1000))
    monkeypatch.chdir(tmp_path)
    client = oras_registry(host, scope_fix=False)
    client.login("alice", ALICE_PASSWORD, hostname=host, config_path=str(config))
    response = client.push(target=f"{host}/alice/artifact-unfixed:1", files=["payload.bin"], config_path=str(config))
    assert response.status_code == 201, response.text


def test_oras_login_push_pull(auth_registry: AuthRegistry, oras_home: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch):
    host = auth_registry.host
    config = tmp_path / "oras-config.json"
    payload = tmp_path / "payload.bin"
    payload.write_bytes(secrets.token_bytes(200_000))
    monkeypatch.chdir(tmp_path)  # oras-py pushes only files under the working directory

    pusher = oras_registry(host)
    assert pusher.login("alice", ALICE_PASSWORD, hostname=host, config_path=str(config))["Status"] \
        == "Login Succeeded"
    assert authfile_hosts(config) == {host}
    response = pusher.push(target=f"{host}/alice/artifact:1", files=["payload.bin:application/octet-stream"],
                           config_path=str(config))
    assert response.status_code == 201, response.text
    served = auth_registry.manifest("alice/artifact", "1")
    assert served.status_code == 200 and served.headers["Docker-Content-Digest"] == \
        response.headers["Docker-Content-Digest"]

    # A fresh client, credentials from the config file only.
    puller = oras_registry(host)
    files = puller.pull(target=f"{host}/alice/artifact:1", outdir=str(tmp_path / "out"), config_path=str(config))
    assert [Path(f).read_bytes() for f in files] == [payload.read_bytes()]

    # No credentials: the private artifact cannot be read.
    anonymous = oras_registry(host)
    with pytest.raises(ValueError):
        anonymous.pull(target=f"{host}/alice/artifact:1", outdir=str(tmp_path / "anon"))
    assert not (tmp_path / "anon" / "payload.bin").exists()


def test_oras_wrong_password_and_other_namespace_are_refused(auth_registry: AuthRegistry, oras_home: Path,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    host = auth_registry.host
    (tmp_path / "payload.bin").write_bytes(secrets.token_bytes(1000))
    monkeypatch.chdir(tmp_path)

    for user, password, name in (("alice", "not-" + ALICE_PASSWORD, "alice/refused"),
                                 ("alice", ALICE_PASSWORD, "bob/refused")):
        config = tmp_path / f"config-{secrets.token_hex(4)}.json"
        client = oras_registry(host)
        client.login(user, password, hostname=host, config_path=str(config))  # oras-py only stores them
        with pytest.raises(ValueError):
            client.push(target=f"{host}/{name}:1", files=["payload.bin"], config_path=str(config))
        assert auth_registry.manifest(name, "1").status_code == 404


# -- over TLS, the certificate verified ------------------------------------------------------------


@pytest.fixture
def tls_auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    registry = start_auth_registry(tmp_path_factory.mktemp("auth-tls") / "data", ["--tls"])
    yield registry
    registry.server.stop()


def install_trust(registry: AuthRegistry, home: Path) -> Path:
    """``dockyard trust --install`` into ``home``'s containers certs.d; returns the registry's folder."""
    certs_d = home / ".config" / "containers" / "certs.d"
    out = subprocess.run(
        [sys.executable, "-m", "dockyard", "trust", "--data-dir", str(registry.server.data_dir), "--host",
         "127.0.0.1", "--port", str(registry.server.port), "--install", "--containers-certs-dir", str(certs_d),
         "--docker-certs-dir", str(home / "docker-certs.d")],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert (certs_d / registry.host / "ca.crt").exists()
    return certs_d / registry.host


def test_tls_challenge_names_an_https_realm(tls_auth_registry: AuthRegistry):
    server = tls_auth_registry.server
    r = httpx.get(f"{server.url}/v2/", verify=server.ssl_context(), timeout=30)
    assert r.status_code == 401
    assert f'realm="https://{server.host}/token"' in r.headers["WWW-Authenticate"]


def test_podman_login_push_pull_over_verified_tls(tls_auth_registry: AuthRegistry, busybox: Path, tmp_path: Path,
                                                  podman_base: Path):
    require("podman")
    podman = Podman(podman_base, tls_auth_registry.server, insecure=False)
    try:
        podman.check_isolated()
        home = tmp_path / "home"
        authfile = isolate_credentials(podman, home)
        host = tls_auth_registry.host

        # The CA is not trusted yet: the login fails on the certificate, not on the password.
        refused = podman("login", "--authfile", str(authfile), "-u", "alice", "-p", ALICE_PASSWORD, host,
                         check=False)
        assert refused.returncode != 0
        assert "certificate signed by unknown authority" in refused.stderr, refused.stderr

        install_trust(tls_auth_registry, home)  # $HOME/.config/containers/certs.d/HOST:PORT/ca.crt
        wrong = podman("login", "--authfile", str(authfile), "-u", "alice", "-p", "not-" + ALICE_PASSWORD, host,
                       check=False)
        assert wrong.returncode != 0 and host not in authfile_hosts(authfile)
        login = podman("login", "--tls-verify=true", "--authfile", str(authfile), "-u", "alice", "-p",
                       ALICE_PASSWORD, host)
        assert "Login Succeeded" in login.stdout, login.stdout

        tarball, token = make_rootfs(tmp_path, busybox)
        image = f"{host}/alice/tls-app:1"
        podman("import", str(tarball), image)
        digest_file = tmp_path / "push.digest"
        podman("push", "--tls-verify=true", "--authfile", str(authfile), "--digestfile", str(digest_file), image)
        digest = digest_file.read_text().strip()
        served = tls_auth_registry.manifest("alice/tls-app", "1")
        assert served.status_code == 200 and served.headers["Docker-Content-Digest"] == digest

        podman("rmi", image)
        podman("pull", "--tls-verify=true", "--authfile", str(authfile), image)
        assert podman("image", "inspect", "--format", "{{.Digest}}", image).stdout.strip() == digest
        assert podman("run", "--rm", image, "/bin/cat", "/etc/dockyard-token").stdout == token

        podman("logout", "--authfile", str(authfile), host)
        podman("rmi", image)
        refused = podman("pull", "--authfile", str(authfile), image, check=False)
        assert denied(refused), refused.stderr
    finally:
        podman.cleanup()


def test_docker_cli_login_push_pull_over_verified_tls(tls_auth_registry: AuthRegistry, busybox: Path,
                                                      tmp_path: Path, podman_base: Path):
    """Over TLS, ``docker login 127.0.0.1:PORT`` through the podman service works: the service
    verifies the certificate with the CA in its $HOME/.config/containers/certs.d."""
    require("podman")
    require("docker")
    podman = Podman(podman_base, tls_auth_registry.server, insecure=False)
    try:
        podman.check_isolated()
        home = tmp_path / "home"
        isolate_credentials(podman, home)
        install_trust(tls_auth_registry, home)
        podman.start_service()
        docker_login_push_pull(podman, tls_auth_registry, tls_auth_registry.host, busybox, tmp_path)
    finally:
        podman.cleanup()
