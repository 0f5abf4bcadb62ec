"""The RDS-managed admin password from Secrets Manager (`LISTENER_POSTGRES_ADMIN_PASSWORD_SECRET_ARN`).

botocore talks to a loopback fake of Secrets Manager's JSON API that is at least as strict as the
real one on what matters here: only `secretsmanager.GetSecretValue` (X-Amz-Target), a SigV4
Authorization header whose credential scope names the secret's region and the `secretsmanager`
service, and an IAM decision per secret ARN (AccessDeniedException otherwise). The password is then
checked by a real PostgreSQL with SCRAM authentication (`private_postgres`).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.session
import psycopg
import pytest
from managed_support import PrivateServer
from psycopg import sql

from listener.managed import PostgresProvisioner, StoreAuthError, StoreConfigError, StoreUnreachable
from listener.managed.master_secret import MasterSecret, parse_arn
from listener.settings import SettingsError, load_settings

LISTENER = str(uuid.UUID(int=0x5EC2E7))
REGION = "eu-west-1"
ARN = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:rds!db-0a1b2c3d-4e5f-AbCdEf"
ACCESS_KEY = "AKIDLISTENERTEST"
SCOPE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]+)/(?P<date>[0-9]{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9-]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=[0-9a-f]{64}$"
)


@dataclass
class FakeSecretsManager:
    """`secrets`: ARN -> SecretString; `allowed`: the ARNs the caller's IAM policy allows."""

    secrets: dict[str, str] = field(default_factory=dict)
    allowed: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    """The SecretId of every accepted GetSecretValue."""
    refused: list[str] = field(default_factory=list)
    """Why any request was refused (a test fails if it expected none)."""


def _handler(fake: FakeSecretsManager) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refuse(self, status: int, kind: str, why: str) -> None:
            fake.refused.append(why)
            self._reply(status, {"__type": kind, "Message": why})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("X-Amz-Target") != "secretsmanager.GetSecretValue":
                return self._refuse(
                    400, "UnknownOperationException", f"target {self.headers.get('X-Amz-Target')}"
                )
            match = SCOPE.match(self.headers.get("Authorization") or "")
            if match is None or not self.headers.get("X-Amz-Date"):
                return self._refuse(400, "MissingAuthenticationTokenException", "no SigV4 signature")
            if match["service"] != "secretsmanager" or match["region"] != REGION:
                return self._refuse(
                    403, "InvalidSignatureException", f"scope {match['region']}/{match['service']}"
                )
            if not {"host", "x-amz-date", "x-amz-target"} <= set(match["signed"].split(";")):
                return self._refuse(403, "InvalidSignatureException", f"signed headers {match['signed']}")
            if match["key"] != ACCESS_KEY:
                return self._refuse(400, "UnrecognizedClientException", f"key {match['key']}")
            secret_id = json.loads(body or b"{}").get("SecretId")
            if secret_id not in fake.allowed:
                return self._refuse(
                    400,
                    "AccessDeniedException",
                    f"User: arn:aws:sts::123456789012:assumed-role/listener is not authorized to perform: "
                    f"secretsmanager:GetSecretValue on resource: {secret_id}",
                )
            if secret_id not in fake.secrets:
                return self._refuse(400, "ResourceNotFoundException", "Secrets Manager can't find the secret")
            fake.requests.append(secret_id)
            self._reply(200, {"ARN": secret_id, "Name": "rds!db", "SecretString": fake.secrets[secret_id]})
            return None

    return Handler


@pytest.fixture
def secrets_manager() -> Iterator[tuple[FakeSecretsManager, str]]:
    fake = FakeSecretsManager()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def session(access_key: str = ACCESS_KEY) -> botocore.session.Session:
    s = botocore.session.Session()
    s.set_credentials(access_key, "fake-secret-access-key")
    return s


def rds_secret(username: str, password: str) -> str:
    return json.dumps({"username": username, "password": password})


@pytest.fixture
def master_role(private_postgres: PrivateServer) -> Iterator[tuple[str, callable]]:
    """An RDS-like master user (CREATEROLE CREATEDB, no superuser) on the SCRAM server; the callable
    sets its password (what RDS does when it rotates the secret) and ends its sessions."""
    name = f"t_master_{uuid.uuid4().hex[:10]}"

    def set_password(password: str) -> None:
        with psycopg.connect(private_postgres.uri(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
            )
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))

    with psycopg.connect(private_postgres.uri(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB").format(sql.Identifier(name)))
    yield name, set_password
    with psycopg.connect(private_postgres.uri(), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def provisioner(server: PrivateServer, endpoint: str, *, arn: str = ARN, key: str = ACCESS_KEY):
    # The URI names no password (what the program hands over in secrets-manager mode).
    uri = f"postgresql://placeholder@127.0.0.1:{server.port}/postgres?sslmode=require"
    master = MasterSecret(
        arn, f"PostgreSQL 127.0.0.1:{server.port}", endpoint_url=endpoint, session=session(key)
    )
    return PostgresProvisioner(uri, listener_id=LISTENER, pool_timeout=2, master_secret=master)


def test_the_admin_password_comes_from_the_secret_and_a_rotation_is_followed(
    private_postgres: PrivateServer, secrets_manager, master_role
):
    fake, endpoint = secrets_manager
    name, set_password = master_role
    set_password("first-master-password-1")
    fake.secrets[ARN] = rds_secret(name, "first-master-password-1")
    fake.allowed.add(ARN)
    with provisioner(private_postgres, endpoint) as p:
        p.check()
        assert fake.requests == [ARN]
        p.check()  # cached: no second read while the password works
        assert fake.requests == [ARN]
        # RDS rotates: a new password in the secret and on the server; open sessions end here too.
        set_password("second-master-password-2")
        fake.secrets[ARN] = rds_secret(name, "second-master-password-2")
        p.check()
        assert fake.requests == [ARN, ARN]
    assert fake.refused == []


def test_a_rejected_password_that_the_secret_still_holds_fails_naming_the_arn(
    private_postgres: PrivateServer, secrets_manager, master_role
):
    fake, endpoint = secrets_manager
    name, set_password = master_role
    set_password("the-servers-password-9")
    fake.secrets[ARN] = rds_secret(name, "a-stale-password-000")
    fake.allowed.add(ARN)
    with provisioner(private_postgres, endpoint) as p, pytest.raises(StoreAuthError) as caught:
        p.check()
    message = str(caught.value)
    assert "admin credentials were rejected" in message
    assert ARN in message
    assert "re-read once" in message
    assert "a-stale-password-000" not in message
    assert "the-servers-password" not in message
    assert fake.requests == [ARN, ARN]  # read, then re-read once: never a loop


def test_access_denied_names_the_arn_and_the_irsa_policy(private_postgres: PrivateServer, secrets_manager):
    fake, endpoint = secrets_manager
    fake.secrets[ARN] = rds_secret("langsmith", "unused-password-1")  # exists, but not allowed
    with provisioner(private_postgres, endpoint) as p, pytest.raises(StoreAuthError) as caught:
        p.check()
    message = str(caught.value)
    assert message.startswith(f"PostgreSQL 127.0.0.1:{private_postgres.port}: cannot read")
    assert ARN in message
    assert "AccessDeniedException" in message
    assert "secretsmanager:GetSecretValue" in message
    assert "IRSA role" in message
    assert fake.requests == []
    assert len(fake.refused) == 1


def test_credentials_the_service_does_not_know_are_an_irsa_error(
    private_postgres: PrivateServer, secrets_manager
):
    _fake, endpoint = secrets_manager
    with (
        provisioner(private_postgres, endpoint, key="AKIDSOMEONEELSE") as p,
        pytest.raises(StoreAuthError) as c,
    ):
        p.check()
    assert "UnrecognizedClientException" in str(c.value)
    assert "eks.amazonaws.com/role-arn" in str(c.value)


def test_a_secret_that_is_not_rds_json_is_a_config_error_without_its_value(
    private_postgres: PrivateServer, secrets_manager
):
    fake, endpoint = secrets_manager
    fake.secrets[ARN] = "just-a-password-string"
    fake.allowed.add(ARN)
    with provisioner(private_postgres, endpoint) as p, pytest.raises(StoreConfigError) as caught:
        p.check()
    assert "'username' and 'password'" in str(caught.value)
    assert "just-a-password-string" not in str(caught.value)


def test_an_unreachable_secrets_manager_is_transient_and_names_the_egress(private_postgres: PrivateServer):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    master = MasterSecret(
        ARN, "PostgreSQL x", endpoint_url=f"http://127.0.0.1:{port}", session=session(), connect_timeout=1
    )
    with pytest.raises(StoreUnreachable) as caught:
        master.current()
    assert ARN in str(caught.value)
    assert f"secretsmanager.{REGION}.amazonaws.com" in str(caught.value)
    assert f"sts.{REGION}.amazonaws.com" in str(caught.value)


def test_the_credentials_repr_hides_the_password():
    from listener.managed.master_secret import MasterCredentials

    assert "hunter2-password" not in repr(MasterCredentials("langsmith", "hunter2-password"))


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:secretsmanager:us-east-1:123456789012",
        "arn:aws:s3:::bucket",
        "arn:aws:secretsmanager:us-east-1:12345:secret:x",
        "rds!db-0a1b2c3d",
    ],
)
def test_the_setting_must_be_a_secret_arn_and_the_error_names_the_variable(value: str):
    environ = {
        "LISTENER_API_KEY": "k",
        "LISTENER_WORKSPACE_ID": str(uuid.uuid4()),
        "LISTENER_LISTENER_ID": str(uuid.uuid4()),
        "LISTENER_REGION": "us",
        "LISTENER_NAMESPACES": "agents",
        "LISTENER_POSTGRES_ADMIN_PASSWORD_SECRET_ARN": value,
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    assert (
        f"LISTENER_POSTGRES_ADMIN_PASSWORD_SECRET_ARN={value!r}: is not a Secrets Manager secret ARN"
        in str(caught.value)
    )


def test_the_region_comes_from_the_arn():
    assert parse_arn(ARN) == REGION
    assert (
        parse_arn("arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:x-AbCdEf")
        == "us-gov-west-1"
    )


def test_the_listeners_settings_wire_the_secret_into_its_managed_stores(
    private_postgres: PrivateServer, secrets_manager, master_role, monkeypatch
):
    """From `LISTENER_*` settings to a working admin connection: the path `python -m listener` takes,
    with botocore's default credential chain (here the environment; in EKS, IRSA's web identity)."""
    from listener.__main__ import _managed_stores

    fake, endpoint = secrets_manager
    name, set_password = master_role
    set_password("settings-master-password-3")
    fake.secrets[ARN] = rds_secret(name, "settings-master-password-3")
    fake.allowed.add(ARN)
    for variable, value in {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": "fake-secret-access-key",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }.items():
        monkeypatch.setenv(variable, value)
    for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(variable, raising=False)
    settings = load_settings(
        {
            "LISTENER_API_KEY": "k",
            "LISTENER_WORKSPACE_ID": str(uuid.uuid4()),
            "LISTENER_LISTENER_ID": LISTENER,
            "LISTENER_REGION": "us",
            "LISTENER_NAMESPACES": "agents",
            "LISTENER_STORE_MODE": "managed",
            "LISTENER_POSTGRES_ADMIN_URI": f"postgresql://{name}@127.0.0.1:{private_postgres.port}/postgres?sslmode=require",
            "LISTENER_REDIS_ADMIN_URI": "redis://127.0.0.1:6379/0",
            "LISTENER_POSTGRES_ADMIN_PASSWORD_SECRET_ARN": ARN,
        }
    )
    stores = _managed_stores(settings)
    try:
        stores.postgres.check()
    finally:
        stores.close()
    assert fake.requests == [ARN]
    assert fake.refused == []
