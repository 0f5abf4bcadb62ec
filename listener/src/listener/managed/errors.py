"""Typed failures of the managed stores, each naming the store and saying what to fix.

A `StoreError`'s `str()` is meant to become a revision's DEPLOY_FAILED reason as it is: one line or
a few, never a traceback, never a password or an admin URI (every message is scrubbed of the secrets
the raiser knew about).
"""

from __future__ import annotations

from collections.abc import Iterable


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-trivial secret replaced by `****` (drivers sometimes quote their input)."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "****")
    return text


class StoreError(Exception):
    """A managed-store operation that failed; `store` is e.g. `PostgreSQL 10.0.1.5:5432`."""

    def __init__(self, store: str, message: str, *, secrets: Iterable[str] = ()):
        self.store = store
        self.reason = scrub(message, secrets)
        super().__init__(f"{store}: {self.reason}")


class StoreConfigError(StoreError):
    """The admin URI or the isolation setting cannot work (e.g. ACL mode on a server without ACLs)."""


class StoreUnreachable(StoreError):
    """No connection: DNS, refused, timed out. Usually egress, a security group or the host name."""


class StoreTLSError(StoreError):
    """The TLS handshake or certificate check failed, or one side wants TLS and the other does not."""


class StoreAuthError(StoreError):
    """The store rejected the admin credentials."""


class InsufficientPrivileges(StoreError):
    """The admin credentials lack a privilege provisioning needs; the message carries the SQL to grant it."""


class UnsupportedServer(StoreError):
    """The server is too old (the Agent Server needs PostgreSQL >= 15.8) or lacks a needed feature."""


class ForeignObject(StoreError):
    """An object with a name this listener derives exists but carries no ownership record of this
    listener (or another listener's): it is never changed or dropped."""


class StoreBusy(StoreError):
    """Another provisioner holds the deployment's lock, or every admin connection is in use; retry later."""


class NotProvisioned(StoreError):
    """Rotation of a deployment whose database and roles do not exist (yet)."""


class ProvisioningFailed(StoreError):
    """The store refused a statement for another reason; the message quotes the server and the step."""
