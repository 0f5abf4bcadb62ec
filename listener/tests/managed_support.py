"""Fixtures for the managed-store tests: the machine's real PostgreSQL and Redis, and a private
PostgreSQL with password (SCRAM) authentication and TLS.

The shared PostgreSQL on 127.0.0.1:5432 trusts every local connection, so it cannot tell a right
password from a wrong one; tests about passwords (convergence, rotation) and certificates run
against a private server started from the same binaries with `scram-sha-256` and `ssl=on`.

No test skips when a store is missing: `.ci/run` starts both, so a missing one is a failure that
says which variable or service to fix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from listener.managed.names import REDIS_OWNERS_KEY, StoreNames
from listener.managed.redis_store import match_pattern

POSTGRES_URI = os.environ.get("LISTENER_TEST_POSTGRES_URI", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URI = os.environ.get("LISTENER_TEST_REDIS_URI", "redis://127.0.0.1:6379/0")
SUPERUSER_PASSWORD = "scram-superuser-test-password-0"


def superuser() -> psycopg.Connection:
    try:
        return psycopg.connect(POSTGRES_URI, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL for the managed-store tests is not reachable ({error}); start it or set "
            "LISTENER_TEST_POSTGRES_URI (.ci/run starts it)"
        )


def redis_admin() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URI, decode_responses=True, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(
            f"Redis for the managed-store tests is not reachable ({error}); start it or set "
            "LISTENER_TEST_REDIS_URI (.ci/run starts it)"
        )
    return client


def unique(label: str = "dep") -> str:
    return f"{label}-{uuid.uuid4()}"


def drop_everything(conn: psycopg.Connection, deployment_id: str) -> None:
    """Remove whatever a test left for `deployment_id`, ours or planted (superuser, test cleanup)."""
    names = StoreNames.of(deployment_id)
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(names.database)))
    for role in (*names.login_roles, names.owner_role):
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def redis_cleanup(client: redis.Redis, deployment_id: str) -> None:
    names = StoreNames.of(deployment_id)
    for key in client.scan_iter(match=match_pattern(names.redis_prefix), count=500):
        client.unlink(key)
    client.hdel(REDIS_OWNERS_KEY, names.redis_user)
    client.execute_command("ACL", "DELUSER", names.redis_user)


@dataclass
class Tracker:
    """Deployment ids a test used; everything of theirs is removed afterwards."""

    ids: list[str]

    def new(self, label: str = "dep") -> str:
        deployment_id = unique(label)
        self.ids.append(deployment_id)
        return deployment_id

    def add(self, deployment_id: str) -> str:
        self.ids.append(deployment_id)
        return deployment_id


@pytest.fixture
def tracked() -> Iterator[Tracker]:
    tracker = Tracker([])
    yield tracker
    with superuser() as conn:
        for deployment_id in tracker.ids:
            drop_everything(conn, deployment_id)
    client = redis_admin()
    for deployment_id in tracker.ids:
        redis_cleanup(client, deployment_id)
    client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PrivateServer:
    """A PostgreSQL with SCRAM passwords and TLS; `uri(...)` builds admin URIs for it."""

    port: int
    ca_file: Path
    other_ca_file: Path

    def uri(
        self, *, user: str = "postgres", password: str = SUPERUSER_PASSWORD, query: str = "sslmode=require"
    ) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/postgres?{query}"


def _tool(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} is needed for the private PostgreSQL of the managed-store tests")
    return path


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root, developers usually not.
    return [_tool("runuser"), "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([_tool("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_certificates(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated second CA."""
    for ca in ("ca", "other-ca"):
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN=test {ca}",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            cwd=directory,
        )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=directory,
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
        cwd=directory,
    )


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivateServer]:
    bindir = Path(
        subprocess.run(
            [_tool("pg_config"), "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    base = Path(tempfile.mkdtemp(prefix="lsdp-pg-"))
    data, certs = base / "data", base / "certs"
    certs.mkdir()
    _make_certificates(certs)
    (base / "pw").write_text(SUPERUSER_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        for path in (base / "pw", certs, *certs.iterdir()):
            shutil.chown(path, "postgres", "postgres")
    os.chmod(certs / "server.key", 0o600)
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={base / 'pw'}",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={certs / 'server.crt'} "
        f"-c ssl_key_file={certs / 'server.key'} -c fsync=off -c max_connections=60"
    )
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(base / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=90,
    )
    try:
        yield PrivateServer(port, certs / "ca.crt", certs / "other-ca.crt")
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def private_tracked(private_postgres: PrivateServer) -> Iterator[Tracker]:
    tracker = Tracker([])
    yield tracker
    with psycopg.connect(private_postgres.uri(), autocommit=True) as conn:
        for deployment_id in tracker.ids:
            drop_everything(conn, deployment_id)
    client = redis_admin()
    for deployment_id in tracker.ids:
        redis_cleanup(client, deployment_id)
    client.close()


class CuttingProxy:
    """A TCP forwarder to a local port whose `cut()` drops every connection at once, the way an
    RDS failover, a NAT idle timeout or a network blip ends an established session."""

    def __init__(self, target_port: int):
        self._target = target_port
        self._sockets: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self._target), timeout=5)
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                self._threads.append(thread)
                thread.start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()
        self.cut()
        for s in self._sockets:
            s.close()
        for thread in self._threads:
            thread.join(timeout=5)
