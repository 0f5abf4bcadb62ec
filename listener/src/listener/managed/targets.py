"""Where the shared stores are, parsed from the admin URIs, and the Agent Server's store variables.

Pure: no connections. `agent_server_env` is what a deployment's pods get as `POSTGRES_URI_CUSTOM`,
`REDIS_URI_CUSTOM` and `REDIS_KEY_PREFIX` (hybrid-data-plane.md §10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from listener.managed.credentials import ENV_POSTGRES_URI, ENV_REDIS_PREFIX, ENV_REDIS_URI, Credentials
from listener.managed.errors import StoreConfigError
from listener.managed.names import StoreNames
from listener.render.context import MANAGED_CA_DIR, MANAGED_CA_KEY
from listener.spec import SecretValue

RedisIsolation = Literal["prefix", "acl"]
DEFAULT_ADMIN_DATABASE = "postgres"
# Connection parameters worth handing on to the pods: how to reach the server and how to trust it.
# A CA file (sslrootcert=/path in the listener's pod) does not exist in an Agent Server pod: its
# contents travel in the deployment's credentials Secret, mounted at `POD_CA_FILE` (`ca_pem`).
_CARRIED = ("sslmode", "connect_timeout", "target_session_attrs")
POD_CA_FILE = f"{MANAGED_CA_DIR}/{MANAGED_CA_KEY}"
MAX_CA_BYTES = 512 * 1024
"""A CA bundle goes into each deployment's Secret (at most 1 MiB in all); RDS's global bundle is ~170 KB."""


@dataclass(frozen=True)
class PostgresTarget:
    host: str
    port: int
    params: tuple[tuple[str, str], ...]
    """Connection parameters the pods get too (sslmode, ...)."""
    ca_file: str | None = None
    """The admin URI's `sslrootcert` file: its contents are handed to the pods (`ca_pem`)."""

    @property
    def display(self) -> str:
        return f"PostgreSQL {self.host}:{self.port}"

    @classmethod
    def from_admin_uri(cls, uri: str) -> PostgresTarget:
        where = "PostgreSQL (LISTENER_POSTGRES_ADMIN_URI)"
        try:
            parts = conninfo_to_dict(uri)
        except psycopg.Error:
            # The driver's message may quote the URI, password included: never pass it on.
            raise StoreConfigError(
                where,
                "is not a valid connection URI; expected postgresql://USER:PASSWORD@HOST:5432/postgres"
                "?sslmode=verify-full (percent-encode special characters)",
            ) from None
        host = str(parts.get("host") or parts.get("hostaddr") or "")
        if not host:
            raise StoreConfigError(where, "names no host")
        if "," in host:
            raise StoreConfigError(where, "names several hosts; give the one endpoint (e.g. the RDS writer)")
        try:
            port = int(parts.get("port") or 5432)
        except ValueError:
            raise StoreConfigError(where, "has a port that is not a number") from None
        params = [(k, str(parts[k])) for k in _CARRIED if parts.get(k)]
        root = str(parts.get("sslrootcert") or "")
        ca_file = None
        if root == "system":
            params.append(("sslrootcert", "system"))
        elif root:
            ca_file = root
            params.append(("sslrootcert", POD_CA_FILE))
        return cls(host=host, port=port, params=tuple(params), ca_file=ca_file)

    def ca_pem(self) -> str | None:
        """The CA bundle the pods must trust (read from the listener's file), or None."""
        if self.ca_file is None:
            return None
        where = "PostgreSQL (LISTENER_POSTGRES_ADMIN_URI)"
        try:
            with open(self.ca_file, "rb") as handle:
                data = handle.read(MAX_CA_BYTES + 1)
        except OSError as error:
            raise StoreConfigError(
                where, f"sslrootcert={self.ca_file} cannot be read in the listener's pod: {error.strerror}"
            ) from None
        if len(data) > MAX_CA_BYTES:
            raise StoreConfigError(where, f"sslrootcert={self.ca_file} is larger than {MAX_CA_BYTES} bytes")
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise StoreConfigError(where, f"sslrootcert={self.ca_file} holds no PEM certificate")
        return text

    def uri(self, role: str, password: str, database: str) -> str:
        """A libpq URI for the pods (user, password and database percent-encoded)."""
        netloc_host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        query = list(self.params)
        if self.host.startswith("/"):  # a socket directory: only expressible as a parameter
            netloc_host, query = "", [("host", self.host), *query]
        netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{netloc_host}:{self.port}"
        return urlunsplit(("postgresql", netloc, "/" + quote(database, safe=""), urlencode(query), ""))


@dataclass(frozen=True)
class RedisTarget:
    scheme: str
    host: str
    port: int
    path: str
    query: str
    admin_uri: SecretValue
    """Handed to the pods as is in `prefix` mode (they share the store's credentials there)."""

    @property
    def display(self) -> str:
        return f"Redis {self.host}:{self.port}"

    @classmethod
    def from_admin_uri(cls, uri: str) -> RedisTarget:
        where = "Redis (LISTENER_REDIS_ADMIN_URI)"
        try:
            parts = urlsplit(uri)
            port = parts.port or 6379
        except ValueError:
            raise StoreConfigError(
                where, "is not a valid URI; expected rediss://USER:PASSWORD@HOST:6379/0"
            ) from None
        if parts.scheme not in ("redis", "rediss"):
            raise StoreConfigError(where, "must start with redis:// or rediss:// (TLS)")
        if not parts.hostname:
            raise StoreConfigError(where, "names no host")
        path = parts.path or "/0"
        if path.strip("/") and not path.strip("/").isdigit():
            raise StoreConfigError(where, "has a path that is not a database number (e.g. /0)")
        return cls(parts.scheme, parts.hostname, port, path, parts.query, SecretValue(uri))

    def uri(self, user: str, password: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}:{self.port}"
        return urlunsplit((self.scheme, netloc, self.path, self.query, ""))


def agent_server_env(
    names: StoreNames,
    credentials: Credentials,
    postgres: PostgresTarget,
    redis: RedisTarget,
    isolation: RedisIsolation,
) -> dict[str, str]:
    """The three variables that point one Agent Server at its own database and its own keys, plus,
    when the admin URI verifies PostgreSQL against a CA file, that file's contents (`MANAGED_CA_KEY`)."""
    redis_uri = (
        redis.uri(names.redis_user, credentials.password.value)
        if isolation == "acl"
        else redis.admin_uri.value
    )
    env = {
        ENV_POSTGRES_URI: postgres.uri(credentials.role, credentials.password.value, names.database),
        ENV_REDIS_URI: redis_uri,
        ENV_REDIS_PREFIX: names.redis_prefix,
    }
    ca = postgres.ca_pem()
    if ca is not None:
        env[MANAGED_CA_KEY] = ca
    return env
