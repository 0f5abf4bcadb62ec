"""`ManagedStores`: the one object the reconcile loop and the CLI use for managed mode.

It pairs the PostgreSQL provisioner and the Redis isolation of one listener, computes each
deployment's Agent Server variables, and orders the two stores so a failure never leaves a
deployment usable half-way: Redis first, then PostgreSQL, whose last step grants LOGIN.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from listener.managed.credentials import Credentials
from listener.managed.errors import StoreError
from listener.managed.master_secret import MasterSecret
from listener.managed.names import StoreNames
from listener.managed.postgres import PostgresProvisioner, Retention, StepHook
from listener.managed.redis_store import RedisStore
from listener.managed.targets import PostgresTarget, RedisIsolation, agent_server_env


@dataclass(frozen=True)
class TeardownReport:
    deployment_id: str
    retention: Retention
    kept: tuple[str, ...]
    removed: tuple[str, ...]
    foreign: tuple[str, ...]
    """Objects with this deployment's names that this listener did not create: untouched."""
    complete: bool
    """False when Redis keys remain (bounded deletion): call `teardown` again on a later cycle."""

    def summary(self) -> str:
        parts = [f"{self.retention}:"]
        if self.kept:
            parts.append("kept " + ", ".join(self.kept))
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        if self.foreign:
            parts.append("left alone (not ours) " + ", ".join(self.foreign))
        if not self.complete:
            parts.append("(more keys remain; continuing next cycle)")
        return " ".join(parts) if len(parts) > 1 else f"{self.retention}: nothing of this deployment found"


class ManagedStores:
    def __init__(self, postgres: PostgresProvisioner, redis: RedisStore):
        if postgres.listener_id != redis.listener_id:
            raise ValueError("the PostgreSQL and Redis parts must belong to the same listener")
        self.postgres = postgres
        self.redis = redis
        self.outage: tuple[datetime, StoreError] | None = None
        """The last unreachable/busy store and when (set and read by the reconcile): during an outage
        the other deployments of a cycle fail fast instead of each waiting out the pool's timeout."""

    @classmethod
    def connect(
        cls,
        *,
        postgres_admin_uri: str,
        redis_admin_uri: str,
        listener_id: str,
        redis_isolation: RedisIsolation = "prefix",
        pool_size: int = 2,
        after_step: StepHook | None = None,
        postgres_admin_password_secret_arn: str | None = None,
        secrets_manager_endpoint: str | None = None,
    ) -> ManagedStores:
        """Build both parts (no connection is opened, and no secret read, until the first call that
        needs one). With `postgres_admin_password_secret_arn` the PostgreSQL admin user and password
        come from that RDS-managed Secrets Manager secret (`MasterSecret`)."""
        master = None
        if postgres_admin_password_secret_arn is not None:
            master = MasterSecret(
                postgres_admin_password_secret_arn,
                PostgresTarget.from_admin_uri(postgres_admin_uri).display,
                endpoint_url=secrets_manager_endpoint,
            )
        postgres = PostgresProvisioner(
            postgres_admin_uri,
            listener_id=listener_id,
            pool_size=pool_size,
            after_step=after_step,
            master_secret=master,
        )
        try:
            redis = RedisStore(
                redis_admin_uri, listener_id=listener_id, isolation=redis_isolation, pool_size=pool_size
            )
        except Exception:
            postgres.close()
            raise
        return cls(postgres, redis)

    def check(self) -> None:
        """Both stores reachable, recent enough, and the admin credentials able to provision."""
        self.postgres.check()
        self.redis.check()

    def ensure(self, deployment_id: str, credentials: Credentials) -> dict[str, str]:
        """Provision (or converge) the deployment and return its Agent Server store variables."""
        self.redis.ensure(deployment_id, credentials)
        self.postgres.ensure(deployment_id, credentials)
        return self.env(deployment_id, credentials)

    def env(self, deployment_id: str, credentials: Credentials) -> dict[str, str]:
        """`POSTGRES_URI_CUSTOM`, `REDIS_URI_CUSTOM`, `REDIS_KEY_PREFIX` (pure; no store is contacted)."""
        return agent_server_env(
            StoreNames.of(deployment_id),
            credentials,
            self.postgres.target,
            self.redis.target,
            self.redis.isolation,
        )

    def teardown(self, deployment_id: str, retention: Retention) -> TeardownReport:
        pg = self.postgres.teardown(deployment_id, retention)
        rd = self.redis.teardown(deployment_id, retention)
        return TeardownReport(
            deployment_id=deployment_id,
            retention=retention,
            kept=pg.kept + rd.kept,
            removed=pg.removed + rd.removed,
            foreign=pg.foreign + rd.foreign,
            complete=rd.complete,
        )

    def begin_rotation(self, deployment_id: str, current: Credentials) -> Credentials:
        """Phase 1: new credentials that work *alongside* `current` (see listener README, rotation)."""
        new = self.postgres.begin_rotation(deployment_id, current)
        self.redis.begin_rotation(deployment_id, new)
        return new

    def finish_rotation(self, deployment_id: str, active: Credentials) -> None:
        """Phase 2: only `active` keeps working."""
        self.postgres.finish_rotation(deployment_id, active)
        self.redis.finish_rotation(deployment_id, active)

    def close(self) -> None:
        try:
            self.postgres.close()
        finally:
            self.redis.close()

    def __enter__(self) -> ManagedStores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
