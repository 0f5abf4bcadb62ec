"""Managed stores (issue 14): a database, login roles and Redis isolation per deployment in the
shared PostgreSQL and Redis, with safe teardown and two-phase credential rotation.

The reconcile loop and `python -m listener rotate-credentials` use `ManagedStores`; everything
else here is its parts and the pure functions around them.

The database and Redis clients (psycopg, redis-py: about 34 MiB of a listener's memory) are imported
only when something here that talks to a store is first used (PEP 562 `__getattr__`): a listener in
the in-cluster store mode never loads them.
"""

import importlib
from typing import TYPE_CHECKING, Any

from listener.managed.credentials import (
    ANNOTATION_ROTATING_FROM,
    ENV_KEYS,
    ENV_POSTGRES_URI,
    ENV_REDIS_PREFIX,
    ENV_REDIS_URI,
    Credentials,
    CredentialsSecretError,
    StoredCredentials,
    initial_credentials,
    new_password,
    read_secret,
    secret_data,
)
from listener.managed.errors import (
    ForeignObject,
    InsufficientPrivileges,
    NotProvisioned,
    ProvisioningFailed,
    StoreAuthError,
    StoreBusy,
    StoreConfigError,
    StoreError,
    StoreTLSError,
    StoreUnreachable,
    UnsupportedServer,
)
from listener.managed.names import Ownership, StoreNames

if TYPE_CHECKING:
    from listener.managed.postgres import MIN_SERVER_VERSION, PostgresProvisioner
    from listener.managed.redis_store import RedisStore
    from listener.managed.stores import ManagedStores, TeardownReport
    from listener.managed.targets import PostgresTarget, RedisTarget, agent_server_env

_LAZY = {
    "MIN_SERVER_VERSION": "postgres",
    "PostgresProvisioner": "postgres",
    "RedisStore": "redis_store",
    "ManagedStores": "stores",
    "TeardownReport": "stores",
    "PostgresTarget": "targets",
    "RedisTarget": "targets",
    "agent_server_env": "targets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "ANNOTATION_ROTATING_FROM",
    "ENV_KEYS",
    "ENV_POSTGRES_URI",
    "ENV_REDIS_PREFIX",
    "ENV_REDIS_URI",
    "MIN_SERVER_VERSION",
    "Credentials",
    "CredentialsSecretError",
    "ForeignObject",
    "InsufficientPrivileges",
    "ManagedStores",
    "NotProvisioned",
    "Ownership",
    "PostgresProvisioner",
    "PostgresTarget",
    "ProvisioningFailed",
    "RedisStore",
    "RedisTarget",
    "StoreAuthError",
    "StoreBusy",
    "StoreConfigError",
    "StoreError",
    "StoreNames",
    "StoreTLSError",
    "StoreUnreachable",
    "StoredCredentials",
    "TeardownReport",
    "UnsupportedServer",
    "agent_server_env",
    "initial_credentials",
    "new_password",
    "read_secret",
    "secret_data",
]
