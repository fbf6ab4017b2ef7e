"""Running several replicas: ``serve --workers``, replicas behind nginx, the deployment files.

* The Kubernetes manifests pass ``kubernetes-validate --strict`` (offline: it bundles the
  schemas) and name only settings that config.py has.
* ``deploy/nginx/dockyard.conf`` passes ``nginx -t``, and really balances: three ``dockyard serve``
  processes on one data folder behind it take a skopeo push and pull and a chunked upload whose
  requests land on different replicas, with tokens issued by one replica accepted by the others.
* ``serve --workers 3`` serves a real client, restarts a killed worker, runs the scheduled
  collection once per interval across its workers, and stops every worker on SIGTERM.
* The token key from configuration, its concurrent creation, and X-Forwarded-* from trusted
  proxies only.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.auth.tokens import load_or_create_key
from dockyard.config import Settings
from tests.backends import sql
from tests.deploy_helpers import ADMIN_PASSWORD, fetch_token, push_and_pull, upload_requests
from tests.images import random_image
from tests.nginx import Nginx, nginx_args, render_nginx
from tests.oci import digest
from tests.server import RegistryServer, free_port

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
# The standard AWS variables the S3 driver's credential chain reads: not dockyard settings.
AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
SETTINGS = {"DOCKYARD_" + f.name.upper() for f in fields(Settings)}


# -- Kubernetes ----------------------------------------------------------------------------


def _manifests() -> dict[str, dict]:
    """kind -> the resource, from every file in deploy/kubernetes/."""
    found: dict[str, dict] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert doc["kind"] not in found, f"two {doc['kind']} resources"
                found[doc["kind"]] = doc
    return found


def test_kubernetes_manifests_pass_strict_validation():
    files = sorted(str(p) for p in KUBERNETES.glob("*.yaml"))
    assert len(files) >= 4
    tool = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run([str(tool), "--strict", *files], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.count("passed") + result.stdout.count("passed") == len(files), result.stderr


def test_kubernetes_manifests_name_real_settings_and_wire_secrets(monkeypatch: pytest.MonkeyPatch):
    kinds = _manifests()
    assert {"Deployment", "Service", "ConfigMap", "Secret"} <= set(kinds)
    config, secret, deployment = kinds["ConfigMap"]["data"], kinds["Secret"]["stringData"], kinds["Deployment"]
    assert set(config) <= SETTINGS, f"not settings in config.py: {set(config) - SETTINGS}"
    assert "DOCKYARD_DATABASE_URL" not in config and not AWS_CREDENTIALS & set(config), "secrets in the ConfigMap"

    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 3
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    (server,) = pod["containers"]
    assert server["command"] == ["dockyard", "serve"]
    assert server["resources"]["requests"] and server["resources"]["limits"]
    assert server["securityContext"]["allowPrivilegeEscalation"] is False
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports["http"] == int(config["DOCKYARD_PORT"]) and ports["metrics"] == int(config["DOCKYARD_METRICS_PORT"])
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod["terminationGracePeriodSeconds"] > float(config["DOCKYARD_SHUTDOWN_TIMEOUT"])

    # Each container: settings from the ConfigMap, secrets only from the Secret's keys.
    for container in [*pod["initContainers"], server]:
        assert {"configMapRef": {"name": "dockyard-config"}} in container["envFrom"]
        for env in container.get("env", []):
            assert env["name"] in SETTINGS | AWS_CREDENTIALS, env["name"]
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "dockyard-secrets" and ref["key"] in secret
    server_env = {e["name"] for e in server["env"]}
    assert {"DOCKYARD_DATABASE_URL", *AWS_CREDENTIALS} <= server_env

    # The token key: a file from the Secret, where DOCKYARD_TOKEN_KEY_FILE looks.
    key_file = Path(config["DOCKYARD_TOKEN_KEY_FILE"])
    (mount,) = [m for m in server["volumeMounts"] if m["name"] == "token-key"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "token-key"]
    assert Path(mount["mountPath"]) == key_file.parent
    assert volume["secret"]["secretName"] == "dockyard-secrets"
    assert volume["secret"]["items"] == [{"key": "token.key", "path": key_file.name}] and "token.key" in secret

    # The migration runs first, with a command that exists.
    (migrate,) = pod["initContainers"]
    assert migrate["command"] == ["dockyard", "db", "upgrade"]
    cli = subprocess.run([sys.executable, "-m", "dockyard", "db", "upgrade", "--help"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr

    # The Service reaches the pods' named ports.
    service = kinds["Service"]["spec"]
    assert service["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert {p["targetPort"] for p in service["ports"]} <= set(ports)

    # And the values parse as dockyard's settings.
    for name, value in {**config, "DOCKYARD_DATABASE_URL": secret["DOCKYARD_DATABASE_URL"]}.items():
        monkeypatch.setenv(name, value)
    from dockyard import config as config_module

    settings = config_module.load()
    assert settings.port == 5000 and settings.token_key_file == str(key_file) and settings.trusted_proxies


# -- token key and proxies --------------------------------------------------------------------


def _create_key(path: str, results: multiprocessing.Queue, start: multiprocessing.Barrier) -> None:
    start.wait()  # all at once
    key = load_or_create_key(Path(path))
    results.put(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_processes_creating_the_token_key_at_once_agree_on_one(tmp_path: Path):
    ctx = multiprocessing.get_context("fork")  # quick to start, so that they really race
    for attempt in range(5):
        path = tmp_path / f"try{attempt}" / "auth" / "token.key"
        results, start = ctx.Queue(), ctx.Barrier(6)
        procs = [ctx.Process(target=_create_key, args=(str(path), results, start)) for _ in range(6)]
        for p in procs:
            p.start()
        keys = {results.get(timeout=60) for _ in procs}
        for p in procs:
            p.join(60)
        assert len(keys) == 1
        on_disk = serialization.load_pem_private_key(path.read_bytes(), None).public_key()
        assert on_disk.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo) in keys
        assert [p.name for p in path.parent.iterdir()] == ["token.key"]  # no temporary files left
        assert path.stat().st_mode & 0o077 == 0


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize("source", ["DOCKYARD_TOKEN_KEY", "DOCKYARD_TOKEN_KEY_FILE"])
def test_tokens_are_signed_with_the_configured_key(tmp_path: Path, source: str):
    key = ec.generate_private_key(ec.SECP256R1())
    if source == "DOCKYARD_TOKEN_KEY":
        value = _pem(key)
    else:
        value = str(tmp_path / "token.key")
        Path(value).write_text(_pem(key))
    env = {"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD, source: value}
    server = RegistryServer(tmp_path / "data", env=env).start()
    try:
        claims = jwt.decode(fetch_token(server), key.public_key(), algorithms=["ES256"], audience="dockyard")
        assert claims["sub"] == "admin"
        assert not (tmp_path / "data" / "auth" / "token.key").exists()  # none of its own
    finally:
        server.stop()


def test_a_bad_configured_key_stops_the_start_with_a_message(tmp_path: Path):
    env = {**os.environ, "DOCKYARD_AUTH": "token", "DOCKYARD_TOKEN_KEY_FILE": str(tmp_path / "missing.key")}
    args = [sys.executable, "-m", "dockyard", "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert "cannot read token_key_file" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "bad.key").write_text("REPLACE-ME\n")
    env["DOCKYARD_TOKEN_KEY_FILE"] = str(tmp_path / "bad.key")
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert "is not a PEM private key" in done.stderr and "Traceback" not in done.stderr


def _realm(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    found = re.search(r'realm="([^"]+)"', response.headers["WWW-Authenticate"])
    assert found, response.headers["WWW-Authenticate"]
    return found.group(1)


def test_forwarded_headers_count_only_from_trusted_proxies(tmp_path: Path):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example", "X-Forwarded-For": "192.0.2.7"}
    base = {"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD}
    trusting = RegistryServer(tmp_path / "a", env={**base, "DOCKYARD_TRUSTED_PROXIES": "127.0.0.1/32, ::1"}).start()
    distrusting = RegistryServer(tmp_path / "b", env={**base, "DOCKYARD_TRUSTED_PROXIES": "10.0.0.0/8"}).start()
    try:
        assert _realm(httpx.get(trusting.url + "/v2/", headers=forwarded)) == "https://registry.example/token"
        assert _realm(httpx.get(trusting.url + "/v2/")) == f"{trusting.url}/token"
        assert _realm(httpx.get(distrusting.url + "/v2/", headers=forwarded)) == f"{distrusting.url}/token"
        # What does not parse is ignored, never a failed request.
        junk = {"X-Forwarded-For": "junk, ::zz", "X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "a b/c"}
        assert _realm(httpx.get(trusting.url + "/v2/", headers=junk)) == f"{trusting.url}/token"
        # The audit log records the client the proxy names (a failed login is audited).
        httpx.get(trusting.url + "/token", params={"service": "dockyard"}, auth=("admin", "wrong"), headers=forwarded)
        httpx.get(
            distrusting.url + "/token", params={"service": "dockyard"}, auth=("admin", "wrong"), headers=forwarded
        )
        assert _audited_clients(trusting) == {"192.0.2.7"}
        assert _audited_clients(distrusting) == {"127.0.0.1"}
    finally:
        trusting.stop()
        distrusting.stop()


def _audited_clients(server: RegistryServer) -> set[str]:
    deadline = time.monotonic() + 30  # the audit log is written in batches
    while time.monotonic() < deadline:
        rows = sql(server.data_dir, "SELECT client FROM audit_events")
        if rows:
            return {r[0] for r in rows}
        time.sleep(0.2)
    return set()


# -- nginx in front of replicas ------------------------------------------------------------------


def test_nginx_example_passes_nginx_t(tmp_path: Path):
    conf = render_nginx(tmp_path / "nginx", free_port(), [free_port() for _ in range(3)])
    done = subprocess.run([*nginx_args(conf), "-t"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
    site = (tmp_path / "nginx" / "dockyard.conf").read_text()
    for directive in (
        "client_max_body_size 0;",
        "proxy_request_buffering off;",
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        "X-Forwarded-Proto",
        "X-Forwarded-For",
        "keepalive",
    ):
        assert directive in site


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[list[RegistryServer], Nginx]]:
    """Three ``dockyard serve`` on one data folder (one SQLite database, one blob store) behind nginx."""
    data = tmp_path / "data"
    env = {
        "DOCKYARD_AUTH": "token",
        "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DOCKYARD_TRUSTED_PROXIES": "127.0.0.1",
        "DOCKYARD_GC_INTERVAL": "0",
    }
    servers = [RegistryServer(data, env=env) for _ in range(3)]
    port = free_port()
    nginx = Nginx(render_nginx(tmp_path / "nginx", port, [s.port for s in servers]), port)
    try:
        for server in servers:
            server.start()
        yield servers, nginx.start()
    finally:
        nginx.stop()
        for server in servers:
            server.stop()


@pytest.mark.clients
def test_replicas_behind_nginx(replicas, tmp_path: Path):
    servers, nginx = replicas
    # The token realm points at the proxy, where the client is, not at a replica.
    assert _realm(httpx.get(nginx.url + "/v2/")) == f"{nginx.url}/token"

    # skopeo through nginx: each upload's POST, PATCH and PUT go round robin over the replicas.
    before = [upload_requests(s) for s in servers]
    rng = random.Random(secrets.randbits(32))
    image = random_image(rng, layers=3, big_layer=3 << 20)
    push_and_pull(tmp_path, f"127.0.0.1:{nginx.port}", image, "team/app", servers[0])
    served = [upload_requests(s) - b for s, b in zip(servers, before, strict=True)]
    assert sum(1 for n in served if n) >= 2, served

    # A chunked upload by hand, one request per replica in turn: each chunk continues, on another
    # replica, the upload that a third began; the token one replica issued works on all of them.
    token = fetch_token(servers[0], nginx.url, "repository:team/chunks:pull,push")
    chunks = [os.urandom(700_000), os.urandom(500_000), os.urandom(300_000)]
    data = b"".join(chunks)
    before = [upload_requests(s) for s in servers]
    with httpx.Client(base_url=nginx.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        r = http.post("/v2/team/chunks/blobs/uploads/")
        assert r.status_code == 202, r.text
        location, offset = r.headers["Location"], 0
        assert location.startswith("/v2/"), location  # relative: right behind any proxy
        for chunk in chunks[:-1]:
            r = http.patch(
                location,
                content=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
            )
            assert r.status_code == 202, r.text
            offset += len(chunk)
            assert r.headers["Range"] == f"0-{offset - 1}"
            location = r.headers["Location"]
        r = http.put(
            location,
            params={"digest": digest(data)},
            content=chunks[-1],
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        served = [upload_requests(s) - b for s, b in zip(servers, before, strict=True)]
        assert sorted(served) == [1, 1, 2], served  # four requests, round robin over three
        for _ in range(3):  # and every replica serves the blob
            r = http.get(f"/v2/team/chunks/blobs/{digest(data)}")
            assert r.status_code == 200 and r.content == data


# -- serve --workers ------------------------------------------------------------------------------


def _workers(supervisor: int) -> set[int]:
    """The worker processes of a ``serve --workers`` supervisor."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == supervisor and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def _three_workers(supervisor: int, without: int | None = None) -> set[int] | None:
    found = _workers(supervisor)
    return found if len(found) == 3 and without not in found else None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(predicate, what: str, timeout: float = 60):  # noqa: ANN001, ANN202 - a test helper
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


@pytest.mark.clients
def test_serve_workers(tmp_path: Path):
    interval = 1.0
    env = {
        "DOCKYARD_AUTH": "token",
        "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DOCKYARD_GC_INTERVAL": str(interval),
        "DOCKYARD_METRICS_PORT": str(free_port()),
    }
    server = RegistryServer(tmp_path / "data", extra_args=["--workers", "3"], env=env).start()
    workers: set[int] = set()
    replaced: set[int] = set()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        workers = _wait(lambda: _three_workers(pid), "three workers")
        _wait(lambda: server.log().count(" listening on ") == 3, "every worker to listen")
        rng = random.Random(secrets.randbits(32))
        push_and_pull(tmp_path, server.host, random_image(rng, layers=3, big_layer=2 << 20), "team/one", server)
        assert server.log().count("created user 'admin'") == 0  # the password was given: nothing printed

        # Each worker's metrics on a port of its own: metrics_port + worker.
        metrics_port = int(env["DOCKYARD_METRICS_PORT"])
        for i in range(3):
            assert httpx.get(f"http://127.0.0.1:{metrics_port + i}/metrics", timeout=30).status_code == 200

        # A killed worker is replaced, and the registry goes on serving.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = _wait(lambda: _three_workers(pid, without=victim), "the killed worker's replacement")
        (new,) = replaced - workers
        _wait(lambda: f"(pid {new}) listening" in server.log(), "the replacement to listen")
        push_and_pull(tmp_path, server.host, random_image(rng, layers=2), "team/two", server)

        # The schedule: every worker polls, one run per interval across all of them.
        def scheduled() -> list[float] | None:
            rows = sql(server.data_dir, "SELECT started_at FROM job_runs WHERE job = 'gc' AND trigger = 'schedule'")
            return sorted(r[0] for r in rows) if len(rows) >= 4 else None

        starts = _wait(scheduled, "four scheduled collections")
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        # Three workers each running on their own would start one every third of an interval.
        assert min(gaps) > interval / 2, gaps
    finally:
        code = server.stop()
    assert code == 0, server.log()[-3000:]
    assert not [pid for pid in replaced | workers if _alive(pid)]
    assert server.log().count("stopping: draining in-flight requests") == 3


def test_serve_workers_stops_when_a_worker_cannot_start(tmp_path: Path):
    """A port someone else holds: the workers cannot bind it, and the supervisor exits with the reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [
            sys.executable,
            "-m",
            "dockyard",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--data-dir",
            str(tmp_path / "data"),
        ]
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=120, env={**os.environ, "DOCKYARD_AUTH": "none"}
        )
    assert done.returncode == 1
    assert "cannot listen on 127.0.0.1" in done.stderr and "a worker could not start" in done.stderr
    assert "Traceback" not in done.stderr


def test_workers_setting_is_checked(tmp_path: Path):
    args = [sys.executable, "-m", "dockyard", "serve", "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env={**os.environ, "DOCKYARD_WORKERS": "0"})
    assert done.returncode == 1 and "workers must be at least 1" in done.stderr


def test_workers_stop_when_the_supervisor_dies(tmp_path: Path):
    server = RegistryServer(tmp_path / "data", extra_args=["--workers", "2"], env={"DOCKYARD_GC_INTERVAL": "0"}).start()
    workers: set[int] = set()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        workers = _wait(lambda: found if len(found := _workers(pid)) == 2 else None, "two workers")
        _wait(lambda: server.log().count(" listening on ") == 2, "both workers to listen")
        server.kill()  # SIGKILL: the supervisor cannot stop them itself
        _wait(lambda: not any(_alive(w) for w in workers), "the orphaned workers to stop")
        assert server.log().count("stopping: draining in-flight requests") == 2
    finally:
        server.stop()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
