"""Per-deployment databases and login roles in a shared PostgreSQL, through one small admin pool.

What one deployment gets (names from `StoreNames`):

* a NOLOGIN **owner role** `lsdp_<hash>` that owns the database and nothing else;
* two **login roles** `lsdp_<hash>_a` / `_b`, members of the owner role, whose sessions run as it
  (`ALTER ROLE ... SET role`), so tables belong to the owner role whichever login created them. The pods
  use one; rotation moves them to the other (two-phase, see `begin_rotation`);
* a **database** `lsdp_<hash>` owned by the owner role, with every privilege revoked from PUBLIC;
* an ownership record (`COMMENT ON ROLE/DATABASE`, listener id + deployment id) on each. Nothing
  without this listener's record is ever altered or dropped.

Every operation holds a session-level advisory lock on the deployment (`pg_advisory_lock`, taken on
the pooled connection outside any transaction, because CREATE/DROP DATABASE cannot run inside one),
inspects, then runs only the missing steps; each step is a transaction of its own or a single
statement, so a crash between any two leaves a state the next run completes. The login role gets
LOGIN only in the last step: a deployment that was never fully provisioned cannot be used.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from listener.managed.credentials import Credentials, new_password
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
from listener.managed.master_secret import SETTING as MASTER_SECRET_SETTING
from listener.managed.master_secret import MasterSecret
from listener.managed.names import ADVISORY_LOCK_CLASS, Ownership, StoreNames
from listener.managed.targets import DEFAULT_ADMIN_DATABASE, PostgresTarget

log = logging.getLogger(__name__)

MIN_SERVER_VERSION: Final = 150008
"""PostgreSQL 15.8: the Agent Server's floor for POSTGRES_URI_CUSTOM (hybrid-data-plane.md §10)."""
APPLICATION_NAME: Final = "langsmith-dataplane-listener"
ENSURE_STEPS: Final = ("owner_role", "login_roles", "database", "database_privileges", "login")
TEARDOWN_STEPS: Final = (
    "disable_login",
    "terminate_sessions",
    "drop_database",
    "drop_login_roles",
    "drop_owner_role",
)
Retention = Literal["retain", "delete"]
StepHook = Callable[[str], None]
"""Called with a step's name after it completes; tests raise from it to simulate a crash there."""


@dataclass(frozen=True)
class RoleState:
    name: str
    exists: bool
    ownership: Ownership | None = None
    can_login: bool = False
    admin_is_member: bool = False


@dataclass(frozen=True)
class DatabaseState:
    name: str
    exists: bool
    owner: str | None = None
    ownership: Ownership | None = None
    public_access: bool = False
    """PUBLIC holds some privilege on it (CONNECT/TEMP by default until revoked)."""


@dataclass(frozen=True)
class PostgresState:
    owner_role: RoleState
    login_roles: tuple[RoleState, RoleState]
    database: DatabaseState

    @property
    def roles(self) -> tuple[RoleState, ...]:
        return (self.owner_role, *self.login_roles)


Verdict = Literal["absent", "ours", "foreign"]


def role_verdict(role: RoleState, expected: Ownership) -> Verdict:
    if not role.exists:
        return "absent"
    return "ours" if role.ownership == expected else "foreign"


def database_verdict(state: PostgresState, expected: Ownership) -> Verdict:
    """Ours when it carries our record and is owned by our owner role; also when it has no comment yet
    but is owned by our (marked) owner role: a crash between CREATE DATABASE (which cannot share a
    transaction with COMMENT) and the next step leaves exactly that."""
    db = state.database
    if not db.exists:
        return "absent"
    owner_ours = db.owner == state.owner_role.name and role_verdict(state.owner_role, expected) == "ours"
    if owner_ours and (db.ownership == expected or db.ownership is None):
        return "ours"
    return "foreign"


@dataclass(frozen=True)
class PostgresTeardown:
    kept: tuple[str, ...]
    removed: tuple[str, ...]
    foreign: tuple[str, ...]
    """Objects with our names but not our ownership record: left exactly as they were."""


def format_version(version: int) -> str:
    major = version // 10000
    if major >= 10:
        return f"{major}.{version % 10000}"
    return f"{version // 10000}.{version // 100 % 100}.{version % 100}"


def _normalise(message: str) -> str:
    return re.sub(r"\s+", " ", message).strip()


class PostgresProvisioner:
    """Provisioning, teardown and rotation for one listener against one PostgreSQL server.

    Thread-safe; one instance per listener. At most `pool_size` admin connections are ever open,
    however many deployments there are; a connection is held for one operation on one deployment.
    """

    def __init__(
        self,
        admin_uri: str,
        *,
        listener_id: str,
        pool_size: int = 2,
        connect_timeout: float = 10.0,
        pool_timeout: float = 30.0,
        lock_timeout: float = 30.0,
        statement_timeout: float = 120.0,
        application_name: str = APPLICATION_NAME,
        min_server_version: int = MIN_SERVER_VERSION,
        after_step: StepHook | None = None,
        master_secret: MasterSecret | None = None,
    ):
        self.target = PostgresTarget.from_admin_uri(admin_uri)
        self.store = self.target.display
        self.listener_id = listener_id
        Ownership(listener_id, "-")  # validates the listener id now, not at the first deployment
        parts = psycopg.conninfo.conninfo_to_dict(admin_uri)
        parts.setdefault("dbname", DEFAULT_ADMIN_DATABASE)
        self._static_secrets = (admin_uri, *(str(parts[k]) for k in ("password",) if parts.get(k)))
        self._master = master_secret
        """With an RDS-managed master secret the user and password come from Secrets Manager, read
        before the first connection and re-read once when the server rejects them (RDS rotated them)."""
        self._conninfo = psycopg.conninfo.make_conninfo(
            "", **parts, connect_timeout=max(1, int(connect_timeout)), application_name=application_name
        )
        self._pool_timeout = pool_timeout
        self._lock_timeout_ms = int(lock_timeout * 1000)
        self._statement_timeout_ms = int(statement_timeout * 1000)
        self._min_version = min_server_version
        self._after_step = after_step
        self._preflight_ok = False
        self._pool_size = pool_size
        self._pool = self._new_pool()

    def _new_pool(self) -> ConnectionPool:
        return ConnectionPool(
            self._conninfo,
            min_size=0,  # nothing is opened until a deployment needs it
            max_size=self._pool_size,
            # A callable: each new connection gets the master secret's current user and password.
            kwargs=self._connect_kwargs,
            configure=self._configure,
            check=ConnectionPool.check_connection,
            timeout=self._pool_timeout,
            reconnect_timeout=max(self._pool_timeout, 1.0),
            name="listener-postgres-admin",
            open=True,
        )

    @property
    def _secrets(self) -> tuple[str, ...]:
        return self._static_secrets + (self._master.secrets if self._master is not None else ())

    def _connect_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {"autocommit": True}
        master = self._master.cached() if self._master is not None else None
        if master is not None:
            kwargs.update(user=master.username, password=master.password)
        return kwargs

    # -- public API -------------------------------------------------------------------------------

    def check(self) -> None:
        """Connect, and fail with a typed error unless the server and the admin role can provision."""
        with self._translate("check"), self._connection() as conn:
            self._preflight(conn)

    def ensure(self, deployment_id: str, credentials: Credentials) -> None:
        """Create or complete the deployment's database and roles and converge the login role that
        `credentials` names to its password. The other login role is left as it is (mid-rotation,
        old pods may still use it)."""
        names, expected = self._names(deployment_id, credentials)
        with self._session(names, "provision") as conn:
            state = self._inspect(conn, names)
            self._refuse_foreign(state, expected)
            if not state.owner_role.exists:
                with conn.transaction():
                    self._create_role(conn, names.owner_role, expected, login_member_of=None)
            elif not state.owner_role.admin_is_member:
                conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(names.owner_role)))
            self._step("owner_role")
            missing = [r for r in state.login_roles if not r.exists]
            if missing:
                with conn.transaction():
                    for role in missing:
                        self._create_role(conn, role.name, expected, login_member_of=names.owner_role)
            for role in state.login_roles:
                if role.exists and not role.admin_is_member:
                    conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role.name)))
            self._step("login_roles")
            if not state.database.exists:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(names.database), sql.Identifier(names.owner_role)
                    )
                )
            self._step("database")
            if not state.database.exists or state.database.public_access or state.database.ownership is None:
                with conn.transaction():
                    conn.execute(
                        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
                            sql.Identifier(names.database)
                        )
                    )
                    conn.execute(
                        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                            sql.Identifier(names.database), sql.Literal(expected.encode())
                        )
                    )
            self._step("database_privileges")
            self._set_login(conn, credentials)
            self._step("login")
        log.info("%s: provisioned database %s for deployment %r", self.store, names.database, deployment_id)

    def teardown(self, deployment_id: str, retention: Retention) -> PostgresTeardown:
        """`retain`: keep the database and roles, disable the login roles (no pod of a deleted deployment
        needs them; `ensure` re-enables). `delete`: disable logins, end their sessions, drop the
        database, then the roles. Objects without our ownership record are never touched."""
        if retention not in ("retain", "delete"):
            raise ValueError(f"retention must be 'retain' or 'delete', got {retention!r}")
        names = StoreNames.of(deployment_id)
        expected = Ownership(self.listener_id, deployment_id)
        kept: list[str] = []
        removed: list[str] = []
        with self._session(names, "teardown") as conn:
            state = self._inspect(conn, names)
            logins = [r for r in state.login_roles if role_verdict(r, expected) == "ours"]
            db_ours = database_verdict(state, expected) == "ours"
            owner_ours = role_verdict(state.owner_role, expected) == "ours"
            foreign = [f"role {r.name}" for r in state.roles if role_verdict(r, expected) == "foreign"]
            if database_verdict(state, expected) == "foreign":
                foreign.append(f"database {names.database}")
            for role in logins:
                if role.can_login:
                    conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role.name)))
            self._step("disable_login")
            if retention == "retain":
                kept += [f"database {names.database}"] if db_ours else []
                kept += [f"role {names.owner_role}"] if owner_ours else []
                kept += [f"role {r.name} (login disabled)" for r in logins]
                return PostgresTeardown(tuple(kept), (), tuple(foreign))
            if logins:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)",
                    ([r.name for r in logins],),
                )
            self._step("terminate_sessions")
            if db_ours:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(names.database))
                )
                removed.append(f"database {names.database}")
            self._step("drop_database")
            for role in logins:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role.name)))
                removed.append(f"role {role.name}")
            self._step("drop_login_roles")
            if owner_ours:
                if state.database.exists and not db_ours and state.database.owner == names.owner_role:
                    kept.append(f"role {names.owner_role} (owns the foreign database {names.database})")
                else:
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(names.owner_role)))
                    removed.append(f"role {names.owner_role}")
            self._step("drop_owner_role")
        log.info(
            "%s: deleted %s of deployment %r", self.store, ", ".join(removed) or "nothing", deployment_id
        )
        return PostgresTeardown(tuple(kept), tuple(removed), tuple(foreign))

    def begin_rotation(self, deployment_id: str, current: Credentials) -> Credentials:
        """Phase 1: give the *other* login role a new password and LOGIN, leaving the current one
        working. The caller then points the pods at the returned credentials and restarts them."""
        names, expected = self._names(deployment_id, current)
        new = Credentials(role=names.other_login_role(current.role), password=new_password())
        with self._session(names, "rotation") as conn:
            self._require_provisioned(self._inspect(conn, names), expected)
            self._set_login(conn, new)
        return new

    def finish_rotation(self, deployment_id: str, active: Credentials) -> None:
        """Phase 2, once every pod uses `active`: the other login role loses LOGIN and its password.
        Sessions it still has are left to end with their pods."""
        names, expected = self._names(deployment_id, active)
        other = names.other_login_role(active.role)
        with self._session(names, "rotation") as conn:
            self._require_provisioned(self._inspect(conn, names), expected)
            self._set_login(conn, active)
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD NULL").format(sql.Identifier(other)))

    def inspect(self, deployment_id: str) -> PostgresState:
        names = StoreNames.of(deployment_id)
        with self._translate("inspect"), self._connection() as conn:
            return self._inspect(conn, names)

    def stats(self) -> dict[str, int]:
        """The pool's counters (`pool_max`, `connections_num`, ...): how many connections were used."""
        return dict(self._pool.get_stats())

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresProvisioner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- steps --------------------------------------------------------------------------------------

    def _names(self, deployment_id: str, credentials: Credentials) -> tuple[StoreNames, Ownership]:
        names = StoreNames.of(deployment_id)
        if credentials.role not in names.login_roles:
            raise ValueError(f"{credentials.role!r} is not a login role of deployment {deployment_id!r}")
        if not credentials.password.value:
            raise ValueError("the password must not be empty")
        return names, Ownership(self.listener_id, deployment_id)

    def _step(self, name: str) -> None:
        if self._after_step is not None:
            self._after_step(name)

    def _create_role(
        self, conn: psycopg.Connection, name: str, expected: Ownership, *, login_member_of: str | None
    ) -> None:
        role = sql.Identifier(name)
        # Explicit NO* attributes document intent; a CREATEROLE (non-superuser) admin may set them.
        attributes = sql.SQL("NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS")
        if login_member_of is None:
            conn.execute(sql.SQL("CREATE ROLE {} {}").format(role, attributes))
        else:
            owner = sql.Identifier(login_member_of)
            conn.execute(sql.SQL("CREATE ROLE {} {} IN ROLE {}").format(role, attributes, owner))
            # Sessions act as the owner role, so objects the Agent Server creates belong to it and
            # stay usable after rotation switches the pods to the other login role.
            conn.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(role, sql.Literal(login_member_of)))
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(expected.encode())))
        # The admin needs membership to hand the database to the owner role (CREATE DATABASE ... OWNER),
        # to drop it, and to end the login roles' sessions; on PostgreSQL 16+ a CREATEROLE admin holds
        # only ADMIN OPTION on roles it created, so it grants itself membership explicitly.
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))

    def _set_login(self, conn: psycopg.Connection, credentials: Credentials) -> None:
        # The SCRAM verifier is computed client-side (libpq's PQencryptPasswordConn): the plaintext
        # never reaches the server, so it cannot appear in its statement log.
        verifier = conn.pgconn.encrypt_password(
            credentials.password.value.encode(), credentials.role.encode(), b"scram-sha-256"
        ).decode()
        conn.execute(
            sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(credentials.role), sql.Literal(verifier)
            )
        )

    def _inspect(self, conn: psycopg.Connection, names: StoreNames) -> PostgresState:
        rows = conn.execute(
            """
            SELECT r.rolname, r.rolcanlogin, shobj_description(r.oid, 'pg_authid'),
                   pg_has_role(current_user, r.oid, 'MEMBER')
            FROM pg_roles r WHERE r.rolname = ANY(%s)
            """,
            ([names.owner_role, *names.login_roles],),
        ).fetchall()
        found = {name: (login, comment, member) for name, login, comment, member in rows}

        def role(name: str) -> RoleState:
            if name not in found:
                return RoleState(name, exists=False)
            login, comment, member = found[name]
            return RoleState(name, True, Ownership.decode(comment), bool(login), bool(member))

        db_row = conn.execute(
            """
            SELECT pg_get_userbyid(d.datdba), shobj_description(d.oid, 'pg_database'),
                   EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                           WHERE a.grantee = 0)
            FROM pg_database d WHERE d.datname = %s
            """,
            (names.database,),
        ).fetchone()
        database = (
            DatabaseState(names.database, True, db_row[0], Ownership.decode(db_row[1]), bool(db_row[2]))
            if db_row
            else DatabaseState(names.database, exists=False)
        )
        return PostgresState(
            role(names.owner_role), (role(names.login_roles[0]), role(names.login_roles[1])), database
        )

    def _refuse_foreign(self, state: PostgresState, expected: Ownership) -> None:
        for role in state.roles:
            if role_verdict(role, expected) == "foreign":
                raise ForeignObject(self.store, _foreign_message("role", role.name, role.ownership, expected))
        if database_verdict(state, expected) == "foreign":
            raise ForeignObject(
                self.store,
                _foreign_message("database", state.database.name, state.database.ownership, expected)
                + f" (owner {state.database.owner!r})",
            )

    def _require_provisioned(self, state: PostgresState, expected: Ownership) -> None:
        self._refuse_foreign(state, expected)
        missing = [r.name for r in state.roles if not r.exists]
        if not state.database.exists:
            missing.append(f"database {state.database.name}")
        if missing:
            raise NotProvisioned(
                self.store,
                f"deployment {expected.deployment_id!r} is not provisioned (missing {', '.join(missing)}); "
                "let the listener provision it before rotating",
            )

    # -- connections and errors ---------------------------------------------------------------------

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(
            sql.SQL("SET lock_timeout = {}; SET statement_timeout = {}").format(
                sql.Literal(self._lock_timeout_ms), sql.Literal(self._statement_timeout_ms)
            )
        )

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        pool, conn = self._acquire()
        try:
            yield conn
        finally:
            pool.putconn(conn)

    def _acquire(self) -> tuple[ConnectionPool, psycopg.Connection]:
        if self._master is not None:
            self._master.current()  # read before the first connection (a StoreError names the ARN)
        retried = False
        while True:
            pool = self._pool
            try:
                return pool, pool.getconn(timeout=self._pool_timeout)
            except PoolTimeout:
                error = self._diagnose()
            if retried or self._master is None or not isinstance(error, StoreAuthError):
                raise error
            retried = True
            # RDS rotates the master secret (every 7 days by default): re-read it once. Open sessions
            # survive a rotation; new connections need the new password, so the pool starts afresh.
            if not self._master.refresh():
                raise error
            log.info(
                "%s: the admin password was rejected; re-read %s (rotated) and reconnecting",
                self.store,
                self._master.arn,
            )
            self._pool = self._new_pool()
            pool.close(timeout=1.0)

    @contextmanager
    def _session(self, names: StoreNames, action: str) -> Iterator[psycopg.Connection]:
        """A pooled admin connection holding the deployment's advisory lock, with errors translated."""
        with self._translate(action), self._connection() as conn:
            if not self._preflight_ok:
                self._preflight(conn)
            try:
                conn.execute("SELECT pg_advisory_lock(%s, %s)", (ADVISORY_LOCK_CLASS, names.lock_key))
            except psycopg.errors.LockNotAvailable:
                raise StoreBusy(
                    self.store,
                    f"another listener process is provisioning deployment {names.deployment_id!r} "
                    f"(advisory lock held longer than {self._lock_timeout_ms / 1000:g} s); retrying next cycle",
                ) from None
            try:
                yield conn
            finally:
                if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    try:
                        conn.execute(
                            "SELECT pg_advisory_unlock(%s, %s)", (ADVISORY_LOCK_CLASS, names.lock_key)
                        )
                    except psycopg.Error:
                        conn.close()  # a session-level lock dies with its session; the pool drops it
                elif not conn.closed:
                    conn.close()

    def _preflight(self, conn: psycopg.Connection) -> None:
        version = conn.info.server_version
        if version < self._min_version:
            raise UnsupportedServer(
                self.store,
                f"server is PostgreSQL {format_version(version)}; Agent Servers need "
                f"{format_version(self._min_version)} or later: upgrade the instance (e.g. RDS engine version)",
            )
        row = conn.execute(
            "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row is not None  # current_user always has a pg_roles row
        user, superuser, createrole, createdb = row
        missing = (
            []
            if superuser
            else [n for n, ok in (("CREATEROLE", createrole), ("CREATEDB", createdb)) if not ok]
        )
        if missing:
            grant = sql.SQL("ALTER ROLE {} {}").format(sql.Identifier(user), sql.SQL(" ".join(missing)))
            raise InsufficientPrivileges(
                self.store,
                f"admin role {user!r} lacks {' and '.join(missing)}, needed to create each deployment's "
                f"roles and database; as a superuser (on RDS: the master user) run: {grant.as_string(conn)};",
            )
        self._preflight_ok = True

    def _diagnose(self) -> StoreError:
        """The pool only says it timed out; one direct connection says why."""
        try:
            with psycopg.connect(self._conninfo, **self._connect_kwargs()):  # type: ignore[arg-type]
                pass
        except psycopg.OperationalError as error:
            return self._classify(error)
        except psycopg.Error as error:
            return StoreUnreachable(self.store, _normalise(str(error)), secrets=self._secrets)
        return StoreBusy(
            self.store,
            f"no admin connection became free within {self._pool_timeout:g} s "
            f"(pool of {self._pool.max_size}); retrying next cycle",
        )

    def _classify(self, error: psycopg.OperationalError) -> StoreError:
        message = _normalise(str(error))
        lower = message.lower()
        if any(word in lower for word in ("ssl", "certificate", "tls")):
            return StoreTLSError(
                self.store,
                f"TLS failed: {message}. Check sslmode (and sslrootcert) in LISTENER_POSTGRES_ADMIN_URI; "
                "RDS needs sslmode=verify-full with the RDS CA bundle or sslrootcert=system",
                secrets=self._secrets,
            )
        if any(
            word in lower for word in ("password authentication failed", "pg_hba.conf", "authentication")
        ) or ("role" in lower and "does not exist" in lower):
            where = (
                f"the master secret {self._master.arn} ({MASTER_SECRET_SETTING}; re-read once) and the user "
                "and database in LISTENER_POSTGRES_ADMIN_URI"
                if self._master is not None
                else "LISTENER_POSTGRES_ADMIN_URI"
            )
            return StoreAuthError(
                self.store,
                f"the admin credentials were rejected: {message}. Check {where}",
                secrets=self._secrets,
            )
        if "database" in lower and "does not exist" in lower:
            return StoreConfigError(
                self.store,
                f"{message}. LISTENER_POSTGRES_ADMIN_URI must name an existing database (e.g. /postgres)",
                secrets=self._secrets,
            )
        return StoreUnreachable(
            self.store,
            f"cannot connect: {message}. Check the host and port, DNS, and that the listener's pods may reach "
            "the database (security group, NetworkPolicy egress)",
            secrets=self._secrets,
        )

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except psycopg.errors.InsufficientPrivilege as error:
            self._preflight_ok = False
            raise InsufficientPrivileges(
                self.store,
                f"{action}: {_primary(error)}. The admin role needs CREATEROLE and CREATEDB "
                "(see the listener README, managed stores)",
                secrets=self._secrets,
            ) from None
        except psycopg.errors.LockNotAvailable as error:
            raise StoreBusy(self.store, f"{action}: {_primary(error)}; retrying next cycle") from None
        except psycopg.OperationalError as error:
            self._preflight_ok = False
            raise self._classify(error) from None
        except psycopg.Error as error:
            raise ProvisioningFailed(
                self.store, f"{action}: {_primary(error)}", secrets=self._secrets
            ) from None


def _primary(error: psycopg.Error) -> str:
    diag = getattr(error, "diag", None)
    primary = diag.message_primary if diag is not None else None
    return _normalise(primary or str(error))


def _foreign_message(kind: str, name: str, found: Ownership | None, expected: Ownership) -> str:
    if found is None:
        whose = "has no ownership record of this listener"
    elif found.listener_id != expected.listener_id:
        whose = f"belongs to listener {found.listener_id}"
    else:
        whose = f"is recorded for deployment {found.deployment_id!r}"
    return (
        f"{kind} {name!r} exists but {whose}; the listener never changes or drops it. Rename or drop it "
        f"yourself if it is a leftover, then the deployment {expected.deployment_id!r} can be provisioned"
    )
