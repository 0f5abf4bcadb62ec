"""A deployment's store credentials and the Kubernetes Secret that keeps them (pure functions).

The Secret (one per deployment, in its namespace) is the source of truth for the password: the
provisioner converges the database role to whatever the Secret holds, so a restarted or second
listener never invents a new one. It also carries the Agent Server's store variables, which the
pods read with `secretKeyRef`, so rotation only has to rewrite this one Secret and restart the pods.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from listener.managed.names import StoreNames
from listener.spec import SecretValue

KEY_ROLE: Final = "postgres-role"
KEY_PASSWORD: Final = "password"  # noqa: S105 -- a key name
ENV_POSTGRES_URI: Final = "POSTGRES_URI_CUSTOM"
ENV_REDIS_URI: Final = "REDIS_URI_CUSTOM"
ENV_REDIS_PREFIX: Final = "REDIS_KEY_PREFIX"
ENV_KEYS: Final = (ENV_POSTGRES_URI, ENV_REDIS_URI, ENV_REDIS_PREFIX)
ANNOTATION_ROTATING_FROM: Final = "langsmith-dataplane/rotating-from"
"""Set on the Secret while a rotation is half done: the login role the old pods may still use. Its
presence tells a re-run to finish the rotation instead of starting another (which would change the
password of the role those pods hold)."""


@dataclass(frozen=True)
class Credentials:
    """The PostgreSQL login role the pods use and its password (also the Redis ACL user's password)."""

    role: str
    password: SecretValue


def new_password() -> SecretValue:
    """256 random bits, URL-safe (`[A-Za-z0-9_-]`), so it needs no quoting anywhere it travels."""
    return SecretValue(secrets.token_urlsafe(32))


def initial_credentials(names: StoreNames) -> Credentials:
    return Credentials(role=names.login_roles[0], password=new_password())


@dataclass(frozen=True)
class StoredCredentials:
    credentials: Credentials
    rotating_from: str | None
    """The previous login role while a rotation is in progress, else None."""


class CredentialsSecretError(ValueError):
    """The Secret exists but does not hold usable credentials (names the Secret and the key)."""


def secret_data(credentials: Credentials, env: Mapping[str, str]) -> dict[str, str]:
    """The Secret's `stringData`: the credentials plus the Agent Server's store variables."""
    missing = [k for k in ENV_KEYS if k not in env]
    if missing:
        raise ValueError(f"store environment lacks {', '.join(missing)}")
    return dict(sorted({**env, KEY_ROLE: credentials.role, KEY_PASSWORD: credentials.password.value}.items()))


def _value(secret: Mapping[str, Any], key: str) -> str | None:
    string_data = secret.get("stringData") or {}
    if key in string_data:
        return str(string_data[key])
    data = secret.get("data") or {}
    if key in data:
        try:
            return base64.b64decode(data[key], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def read_secret(secret: Mapping[str, Any], names: StoreNames) -> StoredCredentials:
    """Credentials from a Secret as the API returns it (`data`, base64) or as rendered (`stringData`)."""
    meta = secret.get("metadata") or {}
    where = f"Secret {meta.get('namespace', '?')}/{meta.get('name', '?')}"
    role, password = _value(secret, KEY_ROLE), _value(secret, KEY_PASSWORD)
    if role is None or role not in names.login_roles:
        raise CredentialsSecretError(
            f"{where}: key {KEY_ROLE!r} must be one of {', '.join(names.login_roles)}, got {role!r}"
        )
    if not password:
        raise CredentialsSecretError(f"{where}: key {KEY_PASSWORD!r} is missing or empty")
    previous = (meta.get("annotations") or {}).get(ANNOTATION_ROTATING_FROM)
    if previous is not None and previous not in names.login_roles:
        raise CredentialsSecretError(
            f"{where}: annotation {ANNOTATION_ROTATING_FROM} names {previous!r}, not one of this deployment's roles"
        )
    return StoredCredentials(Credentials(role, SecretValue(password)), previous if previous != role else None)
