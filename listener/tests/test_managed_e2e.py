"""Issue 14, end to end: the reconcile loop on the managed stores, against the control-plane
emulator, the fake Kubernetes API and the real PostgreSQL (the private one, which checks passwords)
and Redis.

A deployment gets its database, roles and credentials Secret before its first rollout; its pods read
their store variables from that Secret; deletion follows the retention setting under the prune
rules; a store outage or missing privileges fail the revision with the store's name, write nothing
and delete nothing.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import redis
from e2e import ALLOW_EMPTY, NS, OTHER_NS, PRUNE_WINDOW, World, make_reconciler
from lightkube.resources.core_v1 import Secret
from managed_support import REDIS_URI, PrivateServer, Tracker, free_port, redis_admin
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from listener.kube import Cluster
from listener.managed import ENV_KEYS, ManagedStores, PostgresProvisioner, RedisStore, StoreNames
from listener.managed.names import REDIS_OWNERS_KEY
from listener.reconcile import unit
from listener.render.context import COMPONENT_MANAGED_STORES, MANAGED_CA_DIR, MANAGED_CA_KEY
from listener.spec import RenderOptions

MANAGED = RenderOptions(run_as_non_root=True, store_mode="managed")


def secret_values(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def as_mounted(values: dict[str, str], directory: Path) -> str:
    """The Secret's POSTGRES_URI_CUSTOM with its CA file where this test put it (the kubelet would
    mount it at MANAGED_CA_DIR)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANAGED_CA_KEY).write_text(values[MANAGED_CA_KEY])
    uri = values["POSTGRES_URI_CUSTOM"]
    return uri.replace(quote(MANAGED_CA_DIR, safe=""), quote(str(directory), safe="")).replace(
        MANAGED_CA_DIR, str(directory)
    )


def connect_as(uri: str) -> psycopg.Connection:
    return psycopg.connect(uri, connect_timeout=5, autocommit=True)


@pytest.fixture
def admin(private_postgres: PrivateServer) -> Iterator[psycopg.Connection]:
    with psycopg.connect(private_postgres.uri(), autocommit=True) as conn:
        yield conn


class Managed:
    """The e2e world with a listener on the managed stores; `use(stores)` restarts it on others."""

    def __init__(self, world: World, private_postgres: PrivateServer, tracked: Tracker):
        self.world = world
        self.server = private_postgres
        self.tracked = tracked
        self.opened: list[ManagedStores] = []

    def stores(self, postgres_uri: str | None = None, redis_uri: str = REDIS_URI) -> ManagedStores:
        listener_id = self.world.listener_id
        # A short pool timeout: an outage costs one wait of it (later deployments fail fast).
        # By default as on RDS: verify-full against a CA file the listener has (the pods get its contents).
        verified = self.server.uri(query=f"sslmode=verify-full&sslrootcert={self.server.ca_file}")
        stores = ManagedStores(
            PostgresProvisioner(
                postgres_uri or verified, listener_id=listener_id, pool_size=2, pool_timeout=3
            ),
            RedisStore(redis_uri, listener_id=listener_id, pool_size=2, timeout=3),
        )
        self.opened.append(stores)
        return stores

    def use(self, stores: ManagedStores, **config: Any) -> None:
        """A new listener process (no records) with these stores."""
        config.setdefault("prune", ALLOW_EMPTY)
        self.world.reconciler = make_reconciler(
            self.world.client,
            self.world.kube,
            self.world.listener_id,
            self.world.servers,
            (NS, OTHER_NS),
            options=MANAGED,
            stores=stores,
            **config,
        )

    def deploy(self, name: str) -> str:
        return self.tracked.add(self.world.deploy(name))

    def close(self) -> None:
        for stores in self.opened:
            stores.close()


@pytest.fixture
def managed(world: World, private_postgres: PrivateServer, private_tracked: Tracker) -> Iterator[Managed]:
    m = Managed(world, private_postgres, private_tracked)
    m.use(m.stores())
    yield m
    m.close()


def exists(admin: psycopg.Connection, deployment_id: str) -> dict[str, Any]:
    names = StoreNames.of(deployment_id)
    database = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (names.database,)).fetchone()
    roles = dict(
        admin.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)",
            ([names.owner_role, *names.login_roles],),
        ).fetchall()
    )
    return {"database": database is not None, "roles": roles}


def test_a_managed_deployment_gets_its_database_role_and_secret_and_its_pods_point_at_them(
    managed: Managed, admin: psycopg.Connection, tmp_path: Path
):
    world = managed.world
    first = managed.deploy("support-agent")
    second = managed.deploy("billing-agent")
    report = world.cycle()
    assert set(report.deployed) == {first, second}, report
    assert world.revision_status(first)[1] == "DEPLOYED"
    # One bounded admin pool for every deployment: never more connections than its size.
    assert managed.opened[0].postgres.stats()["connections_num"] <= 2

    names = world.names(first)
    secret = world.get("Secret", names.store_secret)
    assert secret is not None
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == COMPONENT_MANAGED_STORES
    values = secret_values(secret)
    store = StoreNames.of(first)
    assert values["postgres-role"] == store.login_roles[0]
    assert values["REDIS_KEY_PREFIX"] == store.redis_prefix
    assert set(ENV_KEYS) <= set(values)

    # The pods read exactly these keys of exactly this Secret; the env Secret holds no copy.
    api = world.get("Deployment", names.api)
    assert api is not None
    for container in (api["spec"]["template"]["spec"]["containers"][0],):
        refs = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in container["env"]}
        for var in ENV_KEYS:
            assert refs[var] == {"name": names.store_secret, "key": var}
    env_secret = world.env_secret(first)
    assert env_secret is not None
    assert not set(ENV_KEYS) & set(secret_values(env_secret))

    # The CA the listener verifies PostgreSQL with reaches the pods as a file their URI names.
    assert values[MANAGED_CA_KEY] == managed.server.ca_file.read_text()
    pod = api["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == names.store_secret)
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts[volume["name"]] == MANAGED_CA_DIR
    uri = values["POSTGRES_URI_CUSTOM"]
    assert conninfo_to_dict(uri)["sslmode"] == "verify-full"
    assert conninfo_to_dict(uri)["sslrootcert"] == f"{MANAGED_CA_DIR}/{MANAGED_CA_KEY}"
    values["POSTGRES_URI_CUSTOM"] = as_mounted(values, tmp_path)

    # The URI in the Secret logs in (the private server checks SCRAM passwords, over verified TLS)
    # to its own database...
    with connect_as(values["POSTGRES_URI_CUSTOM"]) as conn:
        row = conn.execute("SELECT current_database(), session_user, current_user").fetchone()
        assert row == (store.database, store.login_roles[0], store.owner_role)
        conn.execute("CREATE TABLE threads (id int)")  # the Agent Server's migrations can run
    # ... and not to the other deployment's.
    other = StoreNames.of(second)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        connect_as(values["POSTGRES_URI_CUSTOM"].replace(f"/{store.database}?", f"/{other.database}?"))
    # A wrong password does not log in: the Secret's is the one that works.
    wrong = values["POSTGRES_URI_CUSTOM"].replace(values["password"], "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect_as(wrong)

    # A restarted listener takes the deployed revision over without re-provisioning or rewriting.
    managed.use(managed.stores())
    again = world.cycle()
    assert again.applied == [], again
    assert again.failed == {}, again
    assert secret_values(world.get("Secret", names.store_secret) or {})["password"] == values["password"]
    assert (
        world.get("Secret", names.store_secret)["metadata"]["resourceVersion"]
        == secret["metadata"]["resourceVersion"]
    )


def delete_and_prune(managed: Managed, deployment_id: str) -> Any:
    world = managed.world
    world.client.delete_deployment(deployment_id)
    assert world.cycle().pruned == []  # the absence streak starts
    return world.cycle(after=PRUNE_WINDOW)


def test_deletion_with_retain_keeps_database_and_roles_with_logins_disabled(
    managed: Managed, admin: psycopg.Connection, tmp_path: Path
):
    world = managed.world
    deployment_id = managed.deploy("support-agent")
    assert world.cycle().deployed == [deployment_id]
    names = world.names(deployment_id)
    uri = as_mounted(secret_values(world.get("Secret", names.store_secret) or {}), tmp_path)
    connect_as(uri).close()  # works while the deployment exists

    report = delete_and_prune(managed, deployment_id)
    assert report.pruned == [deployment_id], report
    assert any("retain: kept database" in w for w in report.warnings), report.warnings
    assert world.get("Deployment", names.api) is None
    state = exists(admin, deployment_id)
    assert state["database"]
    assert not any(state["roles"].values()), "every login role is NOLOGIN"
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        connect_as(uri)
    # The credentials Secret is data: kept, like an in-cluster deployment's password.
    assert world.get("Secret", names.store_secret) is not None


def test_deletion_with_delete_drops_database_roles_and_redis_keys(
    managed: Managed, admin: psycopg.Connection
):
    managed.use(managed.stores(), data_retention="delete")
    world = managed.world
    deployment_id = managed.deploy("support-agent")
    keeper = managed.deploy("billing-agent")
    assert set(world.cycle().deployed) == {deployment_id, keeper}
    store = StoreNames.of(deployment_id)
    names = world.names(deployment_id)
    client = redis_admin()
    client.set(f"{store.redis_prefix}run:1", "x")
    client.set(f"{StoreNames.of(keeper).redis_prefix}run:1", "y")

    report = delete_and_prune(managed, deployment_id)
    assert report.pruned == [deployment_id], report
    assert exists(admin, deployment_id) == {"database": False, "roles": {}}
    assert client.exists(f"{store.redis_prefix}run:1") == 0
    assert client.hget(REDIS_OWNERS_KEY, store.redis_user) is None
    assert world.get("Secret", names.store_secret) is None
    assert world.get("Deployment", names.api) is None
    # The other deployment is untouched.
    assert exists(admin, keeper)["database"]
    assert client.get(f"{StoreNames.of(keeper).redis_prefix}run:1") == "y"
    client.close()


def test_a_store_outage_fails_the_revision_naming_the_store_and_writes_nothing(
    managed: Managed, admin: psycopg.Connection
):
    port = free_port()  # nothing listens there
    down = managed.stores(postgres_uri=managed.server.uri().replace(str(managed.server.port), str(port)))
    managed.use(down, rollout_timeout=timedelta(seconds=60))
    world = managed.world
    deployment_id = managed.deploy("support-agent")
    other = managed.deploy("billing-agent")
    first = world.cycle()
    assert first.failed == {}, "an outage is retried until the rollout deadline"
    assert any(f"PostgreSQL 127.0.0.1:{port}" in e and "cannot connect" in e for e in first.errors), (
        first.errors
    )
    fast = [e for e in first.errors if "not retried before" in e]
    assert len(fast) == 1, "the second deployment fails fast instead of waiting out the pool again"
    assert {deployment_id, other} == {e.split(":")[0] for e in first.errors}
    report = world.cycle(after=timedelta(seconds=90))
    reason = report.failed[deployment_id]
    assert f"PostgreSQL 127.0.0.1:{port}" in reason
    assert "Traceback" not in reason
    assert world.revision_status(deployment_id)[1] == "DEPLOY_FAILED"
    names = world.names(deployment_id)
    assert world.get("Deployment", names.api) is None
    assert world.get("Secret", names.store_secret) is None
    assert world.env_secret_names(names) == []
    assert exists(admin, deployment_id) == {"database": False, "roles": {}}


def test_missing_privileges_fail_the_revision_with_the_grant_and_a_prune_deletes_nothing(
    managed: Managed, admin: psycopg.Connection
):
    world = managed.world
    running = managed.deploy("support-agent")
    assert world.cycle().deployed == [running]
    names = world.names(running)

    weak = f"lsdp_test_weak_{running[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'weak-password-1'").format(sql.Identifier(weak)))
    try:
        managed.use(managed.stores(postgres_uri=managed.server.uri(user=weak, password="weak-password-1")))
        newcomer = managed.deploy("billing-agent")
        report = world.cycle()
        reason = report.failed[newcomer]
        assert "PostgreSQL 127.0.0.1" in reason, reason
        assert "lacks CREATEROLE and CREATEDB" in reason, reason
        assert f'ALTER ROLE "{weak}" CREATEROLE CREATEDB' in reason
        assert "weak-password-1" not in reason
        assert world.get("Deployment", world.names(newcomer).api) is None
        assert world.get("Secret", world.names(newcomer).store_secret) is None
        # The running deployment was taken over without contacting the store, and keeps running.
        assert running not in report.failed
        assert world.get("Deployment", names.api) is not None

        # Deleted in the control plane while the store refuses: its objects and database stay.
        refused = delete_and_prune(managed, running)
        assert refused.pruned == []
        assert any(running in e and "PostgreSQL" in e for e in refused.errors), refused.errors
        assert world.get("Deployment", names.api) is not None
        assert exists(admin, running)["database"]
    finally:
        for stores in managed.opened:
            stores.close()
        managed.opened.clear()
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(weak)))


def test_redis_outage_fails_the_revision_naming_redis(managed: Managed, admin: psycopg.Connection):
    port = free_port()
    managed.use(
        managed.stores(redis_uri=f"redis://127.0.0.1:{port}/0"), rollout_timeout=timedelta(seconds=60)
    )
    world = managed.world
    deployment_id = managed.deploy("support-agent")
    world.cycle()
    reason = world.cycle(after=timedelta(seconds=90)).failed[deployment_id]
    assert f"Redis 127.0.0.1:{port}" in reason
    assert exists(admin, deployment_id) == {"database": False, "roles": {}}, "Redis first: nothing half-made"
    try:
        redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=1).ping()
        pytest.fail("something listens on the 'down' port")
    except redis.ConnectionError:
        pass


def test_a_moved_or_renamed_deployment_keeps_its_database_and_credentials(
    managed: Managed, admin: psycopg.Connection
):
    world = managed.world
    managed.deploy("keeper")
    mover = managed.deploy("mover")
    world.cycle()
    names = world.names(mover)
    before = secret_values(world.get("Secret", names.store_secret) or {})

    with world.emulator.store._lock:  # a change of placement, as a control-plane fix would make
        world.emulator.store.deployments[mover]["source_config"]["listener_config"]["k8s_namespace"] = (
            OTHER_NS
        )
    report = world.cycle()
    assert report.deployed == [mover], report
    assert any("keeps its database" in w for w in report.warnings), report.warnings
    moved = secret_values(world.get("Secret", names.store_secret, OTHER_NS) or {})
    assert moved["password"] == before["password"], "the same role and password: the same database"
    assert moved["POSTGRES_URI_CUSTOM"] == before["POSTGRES_URI_CUSTOM"]

    report = world.cycle(after=PRUNE_WINDOW + timedelta(seconds=1))
    assert report.pruned == [mover]
    assert world.get("Deployment", names.api) is None
    assert world.get("Secret", names.store_secret) is None, "no stale second copy in the old namespace"
    assert exists(admin, mover)["roles"][StoreNames.of(mover).login_roles[0]], "a move tears nothing down"

    with world.emulator.store._lock:
        world.emulator.store.deployments[mover]["name"] = "renamed"
    report = world.cycle()
    assert report.deployed == [mover], report
    renamed = world.names(mover)
    assert renamed.store_secret != names.store_secret
    assert (
        secret_values(world.get("Secret", renamed.store_secret, OTHER_NS) or {})["password"]
        == before["password"]
    )
    assert world.get("Secret", names.store_secret, OTHER_NS) is None, "the old name's copy is pruned"


def test_a_deposed_leader_never_changes_the_password_the_new_leader_wrote(
    managed: Managed, admin: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Two listener processes: P1 read that a new deployment had no credentials Secret, drew a
    password, then stalled (waiting for the admin pool or the advisory lock) while its lease ran out;
    P2, the new leader, provisioned the deployment and wrote the Secret. P1's store writes are not
    Kubernetes writes, so the cluster's fence did not stop them: P1 set the role's password to one no
    Secret holds, and P2's pods could not log in until the next revision."""
    world = managed.world
    leading = {"p1": True}
    # P1 and P2 are two processes; here they share one, and P2's cycle (its own workers) runs inside
    # P1's provisioning: the per-process provisioning lock would deadlock them.
    monkeypatch.setattr(unit, "_PROVISIONING", contextlib.nullcontext())

    class Stalled(ManagedStores):
        def ensure(self, deployment_id: str, credentials: Any, **kwargs: Any) -> dict[str, str]:
            world.cycle()  # meanwhile P2 (world.reconciler) provisions and writes the Secret
            leading["p1"] = False  # and P1's lease has run out
            return super().ensure(deployment_id, credentials, **kwargs)

    base = managed.stores()
    stalled = Stalled(base.postgres, base.redis)
    p1 = make_reconciler(
        world.client,
        world.kube,
        world.listener_id,
        world.servers,
        (NS, OTHER_NS),
        options=MANAGED,
        stores=stalled,
        prune=ALLOW_EMPTY,
    )
    p1._cluster = Cluster(world.kube.client(NS), fence=lambda: leading["p1"])
    deployment_id = managed.deploy("support-agent")
    p1.run_once(world.now)

    names = world.names(deployment_id)
    values = secret_values(world.get("Secret", names.store_secret) or {})
    assert values, "P2 wrote the credentials Secret"
    with connect_as(as_mounted(values, tmp_path)) as conn:  # the Secret's password still logs in
        assert conn.execute("SELECT session_user").fetchone() == (values["postgres-role"],)


def test_a_binary_value_someone_added_to_a_credentials_secret_does_not_stop_every_deployment(
    managed: Managed, admin: psycopg.Connection
):
    """A key with non-UTF-8 bytes (say a DER certificate added by hand) in one deployment's
    credentials Secret made every cycle after a restart die with a UnicodeDecodeError traceback:
    no deployment of the listener was reconciled any more."""
    world = managed.world
    edited = managed.deploy("support-agent")
    other = managed.deploy("billing-agent")
    assert set(world.cycle().deployed) == {edited, other}
    names = world.names(edited)
    with world.kube.admin_client(NS) as client:
        client.patch(
            Secret,
            names.store_secret,
            {"data": {"extra.der": base64.b64encode(b"\xff\xfe\x00binary").decode()}},
            namespace=NS,
        )
    managed.use(managed.stores())  # a restart: every deployment is taken over again
    report = world.cycle()
    assert report.failed == {}, report
    assert report.errors == [], report.errors
    third = managed.deploy("third-agent")  # and the loop goes on deploying
    assert world.cycle().deployed == [third]
    assert (
        secret_values_raw(world.get("Secret", names.store_secret) or {})["extra.der"] == b"\xff\xfe\x00binary"
    )


def secret_values_raw(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def test_a_missing_credentials_secret_never_changes_the_password_running_pods_hold(
    managed: Managed, admin: psycopg.Connection, tmp_path: Path
):
    """Someone deletes a running deployment's credentials Secret, then the listener restarts. It
    found no Secret, drew a new password and set it on the role the running pods log in with: their
    next connection failed ('password authentication failed'), though nothing about the deployment
    had changed. Fresh credentials go to the login role nobody uses; the running pods keep theirs."""
    world = managed.world
    deployment_id = managed.deploy("support-agent")
    assert world.cycle().deployed == [deployment_id]
    names = world.names(deployment_id)
    running = as_mounted(secret_values(world.get("Secret", names.store_secret) or {}), tmp_path / "old")
    with world.kube.admin_client(NS) as client:
        client.delete(Secret, names.store_secret, namespace=NS)

    managed.use(managed.stores())  # a restart
    report = world.cycle()
    assert report.failed == {}, report
    with connect_as(running) as conn:  # the running pods' credentials still work
        conn.execute("SELECT 1")
    world.cycle(after=timedelta(seconds=301))  # the resync writes a new credentials Secret
    values = secret_values(world.get("Secret", names.store_secret) or {})
    assert values, "the Secret is back"
    with connect_as(as_mounted(values, tmp_path / "new")) as conn:  # and what it holds works too
        conn.execute("SELECT 1")
    with connect_as(running) as conn:
        conn.execute("SELECT 1")
