"""Managed stores in the reconcile: provision before the first rollout, tear down under prune's rules.

In a revision's `pending` phase, before anything of it is written, `find` reads the deployment's
credentials (its credentials Secret; after a move or rename, the Secret it left elsewhere; else new
ones) and `provision` makes the database, roles and Redis isolation exist for them
(`ManagedStores.ensure`, idempotent) and returns what the renderer writes into the credentials Secret
the pods read.
A store error becomes a revision outcome naming the store: an outage or a busy store is retried
(the rollout deadline keeps running), anything an operator must fix fails the revision at once.
Either way nothing of the revision has been applied, so no half-provisioned deployment runs.

`teardown` runs only from `prune._delete_group`, i.e. only when every prune rule held, and never for
a move (the database is keyed by the deployment id and follows it).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from listener import naming, ownership
from listener.kube import Cluster
from listener.managed import (
    Credentials,
    CredentialsSecretError,
    StoreBusy,
    StoreError,
    StoreNames,
    StoreUnreachable,
    initial_credentials,
    read_secret,
    secret_data,
)
from listener.managed.rotation import credentials_selector
from listener.reconcile import apply
from listener.render.context import COMPONENT_MANAGED_STORES
from listener.spec import ManagedStoresSecret, SecretValue

if TYPE_CHECKING:
    from listener.managed import ManagedStores
    from listener.managed.postgres import Retention

TRANSIENT = (StoreUnreachable, StoreBusy)
"""Store errors that may pass by themselves: retried with backoff until the rollout deadline."""
OUTAGE_HOLD = timedelta(seconds=60)
"""After an unreachable store, other deployments' provisioning fails fast for this long (the
admin pool would make each wait its full timeout; 1,000 deployments would stall a cycle for hours)."""


@dataclass(frozen=True)
class Found:
    """A deployment's credentials as the cluster has them (or new ones), before any store is contacted."""

    credentials: Credentials
    live: ManagedStoresSecret | None
    """Its own credentials Secret in its namespace, exactly as it is (rendered back unchanged: the
    Secret is create-only, and only rotate-credentials rewrites it)."""
    fresh: bool = False
    """Drawn now: no credentials Secret of the deployment exists anywhere."""


def find(
    cluster: Cluster,
    *,
    listener_id: str,
    namespaces: Sequence[str],
    namespace: str,
    names: naming.ObjectNames,
    deployment_id: str,
) -> Found:
    store_names = StoreNames.of(deployment_id)
    existing = _credentials_secret(cluster, listener_id, namespaces, namespace, names, deployment_id)
    if existing is None:
        return Found(initial_credentials(store_names), None, fresh=True)
    try:
        credentials = read_secret(existing, store_names).credentials
    except CredentialsSecretError as error:
        raise apply.Rejected(f"managed stores: {error}") from None
    meta = existing.get("metadata") or {}
    own = meta.get("namespace") == namespace and meta.get("name") == names.store_secret
    return Found(credentials, ManagedStoresSecret(names.store_secret, _live_data(existing)) if own else None)


def provision(
    stores: ManagedStores | None,
    found: Found,
    *,
    names: naming.ObjectNames,
    deployment_id: str,
    now: datetime,
    fence: Callable[[], bool] | None = None,
) -> ManagedStoresSecret:
    """Make the deployment's database, roles and Redis isolation exist for `found`'s credentials;
    what the credentials Secret must hold. `fence`: the cluster's (a deposed leader writes nothing)."""
    if stores is None:
        raise apply.Rejected("LISTENER_STORE_MODE=managed but the listener has no managed-store connection")
    if stores.outage is not None and stores.outage[0] <= now < stores.outage[0] + OUTAGE_HOLD:
        raise apply.Retry(f"managed stores: {stores.outage[1]} (not retried before {OUTAGE_HOLD.seconds} s)")
    credentials = found.credentials
    try:
        if found.fresh:
            # The Secret may be gone while pods still run with the role it named (deleted by hand):
            # new credentials never take a role that can log in.
            credentials = Credentials(stores.postgres.free_login_role(deployment_id), credentials.password)
        env = stores.ensure(deployment_id, credentials, fence=fence)
    except TRANSIENT as error:
        if isinstance(error, StoreUnreachable):  # not a lock one deployment's provisioner holds
            stores.outage = (now, error)
        raise apply.Retry(f"managed stores: {error}") from None
    except StoreError as error:
        raise apply.Rejected(f"managed stores: {error}") from None
    if found.live is not None:
        return found.live
    data = secret_data(credentials, env)
    return ManagedStoresSecret(names.store_secret, tuple((k, SecretValue(v)) for k, v in data.items()))


def _credentials_secret(
    cluster: Cluster,
    listener_id: str,
    namespaces: Sequence[str],
    namespace: str,
    names: naming.ObjectNames,
    deployment_id: str,
) -> dict[str, Any] | None:
    """The deployment's credentials Secret: its own name in its namespace first; else one it left
    under an old name or in another watched namespace (the database follows the deployment, so its
    password must too). A Secret of that name that is not the listener's stops the rollout."""
    own = cluster.get("v1", "Secret", namespace, names.store_secret)
    if own is not None:
        if not ownership.owned(own, listener_id):
            raise apply.Rejected(
                f"Secret {namespace}/{names.store_secret} already exists and is not managed by this listener; "
                "refusing to touch it"
            )
        return own
    selector = credentials_selector(listener_id, deployment_id)
    for where in (namespace, *(n for n in namespaces if n != namespace)):
        for secret in cluster.list("v1", "Secret", where, selector):
            if ownership.owned(secret, listener_id) and not (secret.get("metadata") or {}).get(
                "deletionTimestamp"
            ):
                return secret
    return None


def _live_data(secret: Mapping[str, Any]) -> tuple[tuple[str, SecretValue], ...]:
    # A key someone added need not be text (the keys the listener reads are checked by
    # `read_secret`); surrogateescape keeps its bytes, so the render equals the live Secret exactly.
    return tuple(
        (k, SecretValue(base64.b64decode(v).decode("utf-8", "surrogateescape")))
        for k, v in sorted((secret.get("data") or {}).items())
    )


def is_credentials(obj: Mapping[str, Any]) -> bool:
    """A deployment's managed-store credentials Secret (rotation and the reconcile find it by this)."""
    return (
        obj.get("kind") == "Secret"
        and ownership.labels_of(obj).get(naming.LABEL_COMPONENT) == COMPONENT_MANAGED_STORES
    )


def teardown(stores: ManagedStores, deployment_id: str, retention: Retention) -> tuple[bool, str]:
    """(finished, what happened). Not finished — the store failed, or Redis keys remain after this
    pass's bounded deletion — means: keep the deployment's objects, so the next prune pass, under the
    same rules, tears down again."""
    try:
        report = stores.teardown(deployment_id, retention)
    except StoreError as error:
        return False, f"managed stores: {error}; its objects are kept and teardown is retried next pass"
    return report.complete, f"managed stores: {report.summary()}"
