"""Names of everything the listener creates in the shared stores for one deployment, and the
ownership record that marks them as this listener's.

Names depend only on the deployment id (sha256, so any id, however hostile, becomes `[a-z0-9_]`),
which makes them deterministic across restarts and replicas. They are still always quoted with the
driver's `sql.Identifier` where they reach SQL.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Final

NAME_PREFIX: Final = "lsdp"
"""`l`ang`s`mith-`d`ata`p`lane: short, so names stay far below PostgreSQL's 63-byte identifier limit."""
_HASH_LEN: Final = 32  # 128 bits of sha256: collisions between deployment ids are not a concern
MAX_ID_LENGTH: Final = 256
OWNERSHIP_MARKER: Final = "langsmith-dataplane-listener"
"""First word of every ownership comment; the rest is JSON with the listener and deployment ids."""
REDIS_OWNERS_KEY: Final = "langsmith-dataplane:owners"
"""Redis hash: field = a deployment's store name, value = its ownership record. Outside every
deployment's key prefix, so no deployment's ACL user can forge or erase a record."""
ADVISORY_LOCK_CLASS: Final = 0x4C534450  # "LSDP": the first key of pg_advisory_lock(int4, int4)


def _check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{kind} must be a non-empty string, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{kind} is {len(value)} characters long; at most {MAX_ID_LENGTH} are accepted")
    return value


@dataclass(frozen=True)
class StoreNames:
    """Everything one deployment has in the shared stores."""

    deployment_id: str
    database: str
    """The database, and the NOLOGIN role that owns it (roles and databases are separate namespaces)."""
    owner_role: str
    login_roles: tuple[str, str]
    """Two login roles that alternate on rotation; both inherit `owner_role` and act as it."""
    redis_prefix: str
    redis_user: str
    lock_key: int
    """Second key of `pg_advisory_lock(ADVISORY_LOCK_CLASS, lock_key)` (a signed int4)."""

    @classmethod
    def of(cls, deployment_id: str) -> StoreNames:
        _check_id("deployment id", deployment_id)
        digest = hashlib.sha256(deployment_id.encode("utf-8", "surrogatepass")).hexdigest()
        stem = f"{NAME_PREFIX}_{digest[:_HASH_LEN]}"
        lock = int(digest[_HASH_LEN : _HASH_LEN + 8], 16)
        return cls(
            deployment_id=deployment_id,
            database=stem,
            owner_role=stem,
            login_roles=(f"{stem}_a", f"{stem}_b"),
            redis_prefix=f"{NAME_PREFIX}:{digest[:_HASH_LEN]}:",
            redis_user=stem,
            lock_key=lock - (1 << 32) if lock >= 1 << 31 else lock,
        )

    def other_login_role(self, role: str) -> str:
        if role not in self.login_roles:
            raise ValueError(f"{role!r} is not one of this deployment's login roles {self.login_roles}")
        return self.login_roles[1] if role == self.login_roles[0] else self.login_roles[0]


@dataclass(frozen=True)
class Ownership:
    """Who created an object: this record is what makes it safe to change or drop."""

    listener_id: str
    deployment_id: str

    def __post_init__(self) -> None:
        _check_id("listener id", self.listener_id)
        _check_id("deployment id", self.deployment_id)

    def encode(self) -> str:
        # ensure_ascii: a hostile id (quotes, NUL, newlines) becomes plain escaped ASCII text.
        body = json.dumps(
            {"listener_id": self.listener_id, "deployment_id": self.deployment_id}, sort_keys=True
        )
        return f"{OWNERSHIP_MARKER} {body}"

    @classmethod
    def decode(cls, text: str | None) -> Ownership | None:
        """The record in a comment, or None when the comment is absent or not one of ours."""
        if not text or not text.startswith(OWNERSHIP_MARKER + " "):
            return None
        try:
            body = json.loads(text[len(OWNERSHIP_MARKER) + 1 :])
            return cls(str(body["listener_id"]), str(body["deployment_id"]))
        except (ValueError, KeyError, TypeError):
            return None
