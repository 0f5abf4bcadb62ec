"""PostgresProvisioner against the machine's real PostgreSQL (127.0.0.1:5432).

Each test uses fresh deployment ids (so fresh names) and `tracked` drops what they left. The
server trusts local connections, so these tests are about structure, privileges and isolation;
passwords are tested in test_managed_rotation.py against a server that checks them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from managed_support import POSTGRES_URI, Tracker, superuser
from psycopg import sql

from listener.managed import (
    ForeignObject,
    InsufficientPrivileges,
    NotProvisioned,
    Ownership,
    PostgresProvisioner,
    ProvisioningFailed,
    StoreAuthError,
    StoreBusy,
    StoreConfigError,
    StoreError,
    StoreNames,
    StoreTLSError,
    StoreUnreachable,
    UnsupportedServer,
    initial_credentials,
)
from listener.managed.names import ADVISORY_LOCK_CLASS
from listener.managed.postgres import ENSURE_STEPS, TEARDOWN_STEPS

LISTENER = str(uuid.UUID(int=0xA11CE))


class Crash(Exception):
    """Stands in for the process dying after a step (the session, and with it the lock, goes away)."""


def crash_after(step: str):
    def hook(name: str) -> None:
        if name == step:
            raise Crash(step)

    return hook


@pytest.fixture
def provisioner() -> Iterator[PostgresProvisioner]:
    with PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER, pool_timeout=5) as p:
        yield p


def snapshot(deployment_id: str) -> dict[str, object]:
    """Everything about the deployment's objects that matters, read as superuser."""
    names = StoreNames.of(deployment_id)
    with superuser() as conn:
        roles = conn.execute(
            """
            SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication,
                   r.rolbypassrls, r.rolinherit, shobj_description(r.oid, 'pg_authid'), r.rolconfig,
                   ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                         WHERE m.member = r.oid ORDER BY 1)
            FROM pg_roles r WHERE r.rolname = ANY(%s) ORDER BY 1
            """,
            ([names.owner_role, *names.login_roles],),
        ).fetchall()
        db = conn.execute(
            "SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database'), datacl::text[] "
            "FROM pg_database WHERE datname = %s",
            (names.database,),
        ).fetchone()
        owned = conn.execute(
            "SELECT count(*) FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid "
            "WHERE d.deptype = 'o' AND r.rolname = ANY(%s)",
            ([names.owner_role, *names.login_roles],),
        ).fetchone()
    return {"roles": roles, "database": db, "shared_objects_owned": owned[0] if owned else 0}


def connect_as(role: str, database: str) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1", port=5432, user=role, dbname=database, autocommit=True, connect_timeout=5
    )


def test_create_makes_an_isolated_database_owned_by_the_deployments_role(provisioner, tracked: Tracker):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    creds = initial_credentials(names)
    provisioner.ensure(deployment_id, creds)

    state = snapshot(deployment_id)
    record = Ownership(LISTENER, deployment_id).encode()
    owner, login_a, login_b = sorted(state["roles"], key=lambda r: (len(r[0]), r[0]))
    assert owner[:9] == (names.owner_role, False, False, False, False, False, False, True, record)
    assert login_a[:9] == (names.login_roles[0], True, False, False, False, False, False, True, record)
    assert login_b[:9] == (names.login_roles[1], False, False, False, False, False, False, True, record)
    for login in (login_a, login_b):
        assert login[9] == [f"role={names.owner_role}"]
        assert login[10] == [names.owner_role]
    db_owner, db_comment, acl = state["database"]
    assert (db_owner, db_comment) == (names.owner_role, record)
    assert acl == [f"{names.owner_role}=CTc/{names.owner_role}"]  # nothing for PUBLIC (`=...`)
    assert state["shared_objects_owned"] == 1  # the database, and nothing else cluster-wide

    # The login role works there, and what it creates belongs to the owner role (survives rotation).
    with connect_as(creds.role, names.database) as conn:
        assert conn.execute("SELECT current_user, session_user").fetchone() == (names.owner_role, creds.role)
        conn.execute("CREATE TABLE threads (id int)")
        assert conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'threads'").fetchone() == (
            names.owner_role,
        )
    # Standby login role: cannot log in until a rotation enables it.
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        connect_as(names.login_roles[1], names.database)


def test_re_running_changes_nothing(provisioner, tracked: Tracker):
    deployment_id = tracked.new()
    creds = initial_credentials(StoreNames.of(deployment_id))
    provisioner.ensure(deployment_id, creds)
    before = snapshot(deployment_id)
    provisioner.ensure(deployment_id, creds)
    with PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER) as restarted:  # a restarted listener
        restarted.ensure(deployment_id, creds)
    assert snapshot(deployment_id) == before


@pytest.mark.parametrize("step", ENSURE_STEPS)
def test_a_crash_after_any_step_leaves_nothing_usable_and_the_next_run_completes(step: str, tracked: Tracker):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    creds = initial_credentials(names)
    with (
        PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER, after_step=crash_after(step)) as crashing,
        pytest.raises(Crash),
    ):
        crashing.ensure(deployment_id, creds)
    state = snapshot(deployment_id)
    logins = [r for r in state["roles"] if r[1]]
    if step != "login":
        assert logins == [], f"a login role can log in after a crash after {step!r}"
    with PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER) as again:
        again.ensure(deployment_id, creds)
    reference = tracked.new()
    with PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER) as clean:
        clean.ensure(reference, initial_credentials(StoreNames.of(reference)))
    assert _shape(snapshot(deployment_id), deployment_id) == _shape(snapshot(reference), reference)


def _shape(state: dict[str, object], deployment_id: str) -> object:
    """A snapshot with the deployment's own names and ids abstracted, to compare two deployments."""
    names = StoreNames.of(deployment_id)
    text = repr(state)
    for value in (names.login_roles[0], names.login_roles[1], names.owner_role, deployment_id):
        text = text.replace(value, {names.login_roles[0]: "A", names.login_roles[1]: "B"}.get(value, "X"))
    return text


def test_two_provisioners_racing_end_in_the_same_state(tracked: Tracker):
    deployment_id = tracked.new()
    creds = initial_credentials(StoreNames.of(deployment_id))
    racers = [PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER) for _ in range(4)]
    start = threading.Barrier(len(racers))
    errors: list[BaseException] = []

    def race(p: PostgresProvisioner) -> None:
        try:
            start.wait(timeout=30)
            p.ensure(deployment_id, creds)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=race, args=(p,)) for p in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for p in racers:
        p.close()
    assert errors == []
    reference = tracked.new()
    with PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER) as clean:
        clean.ensure(reference, initial_credentials(StoreNames.of(reference)))
    assert _shape(snapshot(deployment_id), deployment_id) == _shape(snapshot(reference), reference)


def test_concurrent_teardown_and_create_never_leave_a_half_state(tracked: Tracker):
    for _ in range(3):
        deployment_id = tracked.new()
        creds = initial_credentials(StoreNames.of(deployment_id))
        with (
            PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER) as a,
            PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER) as b,
        ):
            a.ensure(deployment_id, creds)
            start = threading.Barrier(2)
            errors: list[BaseException] = []

            def run(fn, *args, start=start, errors=errors) -> None:
                try:
                    start.wait(timeout=30)
                    fn(*args)
                except BaseException as error:
                    errors.append(error)

            threads = [
                threading.Thread(target=run, args=(a.ensure, deployment_id, creds)),
                threading.Thread(target=run, args=(b.teardown, deployment_id, "delete")),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            assert errors == []
            state = snapshot(deployment_id)
            complete = len(state["roles"]) == 3 and state["database"] is not None
            absent = state["roles"] == [] and state["database"] is None
            assert complete or absent, state
            a.ensure(deployment_id, creds)  # and from either, provisioning converges
            assert len(snapshot(deployment_id)["roles"]) == 3


def test_one_deployments_role_cannot_reach_anothers_database(provisioner, tracked: Tracker):
    first, second = tracked.new(), tracked.new()
    a, b = StoreNames.of(first), StoreNames.of(second)
    provisioner.ensure(first, initial_credentials(a))
    provisioner.ensure(second, initial_credentials(b))
    with connect_as(a.login_roles[0], a.database) as conn:
        conn.execute("CREATE TABLE secrets (v text)")
    for role, database in ((a.login_roles[0], b.database), (b.login_roles[0], a.database)):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            connect_as(role, database)
    # Nor can any other role of the cluster (PUBLIC holds nothing on a deployment's database).
    bystander = f"t_bystander_{uuid.uuid4().hex[:12]}"
    with superuser() as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(bystander)))
        try:
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                connect_as(bystander, a.database)
        finally:
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(bystander)))


def test_a_deployment_cannot_plant_objects_in_or_block_the_next_deployments_database(
    provisioner, tracked: Tracker
):
    """PUBLIC may CONNECT to template1 by default, so a deployment's role can log in there. Copying
    template1 would hand what it leaves (a large object; on clusters upgraded from before 15, tables
    and functions in `public`) to every later deployment's database, and its open session would make
    CREATE DATABASE fail for everyone ("source database is being accessed by other users")."""
    attacker, victim = tracked.new("attacker"), tracked.new("victim")
    a, v = StoreNames.of(attacker), StoreNames.of(victim)
    provisioner.ensure(attacker, initial_credentials(a))
    planted = None
    with connect_as(a.login_roles[0], "template1") as session:
        try:
            planted = session.execute("SELECT lo_from_bytea(0, 'planted by another deployment')").fetchone()
            provisioner.ensure(victim, initial_credentials(v))  # while the session is still open
        finally:
            if planted is not None:
                session.execute("SELECT lo_unlink(%s)", planted)
    with (
        psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname=v.database) as conn,
    ):
        assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)


@pytest.mark.parametrize(
    "deployment_id",
    [
        "x'; DROP DATABASE postgres; --",
        '"; DROP ROLE postgres; --',
        "line\nbreak",
        "nul\x00byte",
        "ünïcödé-部署-🚀",
        "$$ $tag$ \\ %s {}",
        "a" * 256,
    ],
)
def test_hostile_deployment_ids_are_inert(provisioner, tracked: Tracker, deployment_id: str):
    tracked.add(deployment_id)
    names = StoreNames.of(deployment_id)
    provisioner.ensure(deployment_id, initial_credentials(names))
    state = provisioner.inspect(deployment_id)
    assert state.database.ownership == Ownership(LISTENER, deployment_id)  # the id survives intact
    report = provisioner.teardown(deployment_id, "delete")
    assert f"database {names.database}" in report.removed
    with superuser() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'postgres'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'postgres'").fetchone() == (1,)


def test_a_database_with_our_name_that_we_did_not_create_is_never_touched(provisioner, tracked: Tracker):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    with superuser() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names.database)))
    with pytest.raises(
        ForeignObject, match=f"database '{names.database}' exists but has no ownership record"
    ) as caught:
        provisioner.ensure(deployment_id, initial_credentials(names))
    assert caught.value.store == "PostgreSQL 127.0.0.1:5432"
    assert snapshot(deployment_id)["roles"] == []  # refused before creating anything
    report = provisioner.teardown(deployment_id, "delete")
    assert report.foreign == (f"database {names.database}",)
    assert report.removed == ()
    assert snapshot(deployment_id)["database"][0] == "postgres"  # still there, still theirs


def test_our_comment_copied_onto_a_foreign_database_is_not_enough(provisioner, tracked: Tracker):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    provisioner.ensure(deployment_id, initial_credentials(names))
    with superuser() as conn:  # someone hands "our" database to another owner
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO postgres").format(sql.Identifier(names.database)))
    with pytest.raises(ForeignObject, match="owner 'postgres'"):
        provisioner.ensure(deployment_id, initial_credentials(names))
    report = provisioner.teardown(deployment_id, "delete")
    assert f"database {names.database}" in report.foreign
    assert snapshot(deployment_id)["database"] is not None


@pytest.mark.parametrize("comment", [None, "made by a human", "OTHER_LISTENER"])
def test_roles_with_our_names_but_not_our_record_are_refused(
    provisioner, tracked: Tracker, comment: str | None
):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    with superuser() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(names.login_roles[1])))
        if comment is not None:
            text = (
                Ownership(str(uuid.uuid4()), deployment_id).encode()
                if comment == "OTHER_LISTENER"
                else comment
            )
            conn.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(
                    sql.Identifier(names.login_roles[1]), sql.Literal(text)
                )
            )
    with pytest.raises(ForeignObject, match=names.login_roles[1]) as caught:
        provisioner.ensure(deployment_id, initial_credentials(names))
    if comment == "OTHER_LISTENER":
        assert "belongs to listener" in str(caught.value)
    report = provisioner.teardown(deployment_id, "delete")
    assert report.foreign == (f"role {names.login_roles[1]}",)
    roles = snapshot(deployment_id)["roles"]
    assert [(r[0], r[1]) for r in roles] == [(names.login_roles[1], True)]  # untouched, still LOGIN


def test_teardown_retain_keeps_data_and_disables_logins_and_ensure_reenables(provisioner, tracked: Tracker):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    creds = initial_credentials(names)
    provisioner.ensure(deployment_id, creds)
    with connect_as(creds.role, names.database) as conn:
        conn.execute("CREATE TABLE runs (id int); INSERT INTO runs VALUES (1)")
    report = provisioner.teardown(deployment_id, "retain")
    assert f"database {names.database}" in report.kept
    assert report.removed == ()
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        connect_as(creds.role, names.database)
    provisioner.ensure(deployment_id, creds)
    with connect_as(creds.role, names.database) as conn:
        assert conn.execute("SELECT id FROM runs").fetchall() == [(1,)]


def test_rotating_a_retained_deployment_keeps_its_logins_disabled(provisioner, tracked: Tracker):
    """`retain` disables the login roles of a deleted deployment (its credentials Secret is kept).
    Rotating it (say its password leaked) must not hand the deleted deployment a working login."""
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    creds = initial_credentials(names)
    provisioner.ensure(deployment_id, creds)
    provisioner.teardown(deployment_id, "retain")
    new = provisioner.begin_rotation(deployment_id, creds)
    provisioner.finish_rotation(deployment_id, new)
    assert [r[1] for r in snapshot(deployment_id)["roles"]] == [False, False, False], "nobody can log in"
    provisioner.ensure(deployment_id, new)  # deployed again: with the rotated credentials only
    logins = {r[0]: r[1] for r in snapshot(deployment_id)["roles"]}
    assert logins == {names.owner_role: False, new.role: True, creds.role: False}


def test_teardown_delete_ends_sessions_and_removes_everything(provisioner, tracked: Tracker):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    creds = initial_credentials(names)
    provisioner.ensure(deployment_id, creds)
    session = connect_as(creds.role, names.database)
    report = provisioner.teardown(deployment_id, "delete")
    assert set(report.removed) == {
        f"database {names.database}",
        *(f"role {r}" for r in (names.owner_role, *names.login_roles)),
    }
    assert snapshot(deployment_id) == {"roles": [], "database": None, "shared_objects_owned": 0}
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    # Nothing left: deleting again, or a deployment never provisioned, is a quiet no-op.
    again = provisioner.teardown(deployment_id, "delete")
    assert (again.removed, again.foreign) == ((), ())


@pytest.mark.parametrize("step", TEARDOWN_STEPS)
def test_a_crash_during_teardown_is_finished_by_the_next_run(step: str, tracked: Tracker):
    deployment_id = tracked.new()
    with PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER) as p:
        p.ensure(deployment_id, initial_credentials(StoreNames.of(deployment_id)))
    with (
        PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER, after_step=crash_after(step)) as crashing,
        pytest.raises(Crash),
    ):
        crashing.teardown(deployment_id, "delete")
    assert all(not r[1] for r in snapshot(deployment_id)["roles"])  # whatever is left cannot log in
    with PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER) as p:
        p.teardown(deployment_id, "delete")
    assert snapshot(deployment_id) == {"roles": [], "database": None, "shared_objects_owned": 0}


@pytest.fixture
def limited_admin() -> Iterator[callable]:
    """Makes admin roles like RDS's master user: not superuser, with chosen attributes."""
    made: list[str] = []

    def make(attributes: str) -> str:
        name = f"t_admin_{uuid.uuid4().hex[:12]}"
        with superuser() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN " + attributes).format(sql.Identifier(name)))
        made.append(name)
        return f"postgresql://{name}@127.0.0.1:5432/postgres"

    yield make
    with superuser() as conn:
        for name in made:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_an_rds_like_admin_without_superuser_can_do_the_whole_lifecycle(limited_admin, tracked: Tracker):
    uri = limited_admin("NOSUPERUSER CREATEROLE CREATEDB")
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    creds = initial_credentials(names)
    with PostgresProvisioner(uri, listener_id=LISTENER) as p:
        p.ensure(deployment_id, creds)
        session = connect_as(creds.role, names.database)
        new = p.begin_rotation(deployment_id, creds)
        p.finish_rotation(deployment_id, new)
        p.teardown(deployment_id, "delete")
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")  # the admin could end the deployment's sessions
    session.close()
    assert snapshot(deployment_id) == {"roles": [], "database": None, "shared_objects_owned": 0}


def test_delete_is_not_blocked_by_what_the_deployment_left_in_other_databases(
    limited_admin, tracked: Tracker
):
    """A deployment's role may connect to every database that grants CONNECT to PUBLIC and create
    large objects there. In the admin's own database teardown drops them with the roles; elsewhere it
    cannot reach them, and says which database holds what and the SQL to run."""
    uri = limited_admin("NOSUPERUSER CREATEROLE CREATEDB")
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    creds = initial_credentials(names)
    elsewhere = f"t_other_{uuid.uuid4().hex[:12]}"
    with superuser() as su:
        su.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(elsewhere)))
    try:
        with PostgresProvisioner(uri, listener_id=LISTENER, pool_timeout=5) as p:
            p.ensure(deployment_id, creds)
            for database in ("postgres", elsewhere):
                with connect_as(creds.role, database) as session:
                    session.execute("SELECT lo_from_bytea(0, 'left behind')")
            with pytest.raises(ProvisioningFailed) as caught:
                p.teardown(deployment_id, "delete")
            message = str(caught.value)
            assert f"database {elsewhere}" in message, message
            assert "postgres" not in message.replace("PostgreSQL", ""), message  # dropped there
            assert f'run: DROP OWNED BY "{names.owner_role}";' in message, message
            fix = message.split("run: ", 1)[1].split(" then", 1)[0]
            with psycopg.connect(uri.replace("/postgres", f"/{elsewhere}"), autocommit=True) as admin:
                admin.execute(fix)  # exactly what the message says, as the admin role
            p.teardown(deployment_id, "delete")  # the next pass finishes
        assert snapshot(deployment_id) == {"roles": [], "database": None, "shared_objects_owned": 0}
    finally:
        with superuser() as su:
            su.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(elsewhere)))
            for role in (names.owner_role, *names.login_roles):
                if su.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    su.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))


@pytest.mark.parametrize(
    ("attributes", "missing"),
    [("CREATEDB", "CREATEROLE"), ("CREATEROLE", "CREATEDB"), ("", "CREATEROLE and CREATEDB")],
)
def test_an_admin_without_needed_privileges_gets_the_grant_to_run(
    limited_admin, tracked: Tracker, attributes: str, missing: str
):
    uri = limited_admin(attributes)
    user = uri.split("//")[1].split("@")[0]
    deployment_id = tracked.new()
    with PostgresProvisioner(uri, listener_id=LISTENER) as p:
        with pytest.raises(InsufficientPrivileges) as caught:
            p.ensure(deployment_id, initial_credentials(StoreNames.of(deployment_id)))
        with pytest.raises(InsufficientPrivileges):
            p.check()
    message = str(caught.value)
    assert message.startswith("PostgreSQL 127.0.0.1:5432: admin role")
    assert f"lacks {missing}" in message
    assert f'ALTER ROLE "{user}" {missing.replace(" and ", " ")};' in message
    assert snapshot(deployment_id) == {"roles": [], "database": None, "shared_objects_owned": 0}


def test_a_server_below_the_minimum_version_is_refused(tracked: Tracker):
    deployment_id = tracked.new()
    # The machine runs 15.x >= 15.8; the floor is raised instead of the server lowered.
    with (
        PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER, min_server_version=990000) as p,
        pytest.raises(
            UnsupportedServer, match=r"server is PostgreSQL 15\.\d+; Agent Servers need 99\.0 or later"
        ),
    ):
        p.ensure(deployment_id, initial_credentials(StoreNames.of(deployment_id)))
    assert snapshot(deployment_id)["roles"] == []


def test_an_unreachable_server_is_a_typed_error_without_the_password():
    with (
        PostgresProvisioner(
            "postgresql://postgres:hunter2-secret@127.0.0.1:1/postgres",
            listener_id=LISTENER,
            pool_timeout=1,
            connect_timeout=2,
        ) as p,
        pytest.raises(StoreUnreachable) as caught,
    ):
        p.ensure("d", initial_credentials(StoreNames.of("d")))
    message = str(caught.value)
    assert message.startswith("PostgreSQL 127.0.0.1:1: cannot connect")
    assert "Connection refused" in message
    assert "hunter2" not in message
    assert "Traceback" not in message


def test_tls_required_by_the_client_but_not_offered_is_a_tls_error():
    with (
        PostgresProvisioner(
            "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=require",
            listener_id=LISTENER,
            pool_timeout=1,
        ) as p,
        pytest.raises(StoreTLSError, match="server does not support SSL"),
    ):
        p.check()


@pytest.mark.parametrize(
    "query", ["connect_timeout=5", "application_name=ops-admin", "connect_timeout=3&sslmode=disable"]
)
def test_an_admin_uri_with_its_own_connect_timeout_or_application_name_works(query: str):
    """Common libpq parameters in the admin URI; they used to collide with the listener's own
    (TypeError: make_conninfo() got multiple values for keyword argument ...) and the listener died at
    start with a traceback."""
    with PostgresProvisioner(f"{POSTGRES_URI}?{query}", listener_id=LISTENER, pool_timeout=5) as p:
        p.check()


def test_unknown_admin_role_is_an_auth_error_and_a_missing_admin_database_a_config_error():
    with (
        PostgresProvisioner(
            "postgresql://no_such_admin_role@127.0.0.1:5432/postgres", listener_id=LISTENER, pool_timeout=1
        ) as p,
        pytest.raises(StoreAuthError, match="admin credentials were rejected"),
    ):
        p.check()
    with (
        PostgresProvisioner(
            "postgresql://postgres@127.0.0.1:5432/no_such_database_x", listener_id=LISTENER, pool_timeout=1
        ) as p,
        pytest.raises(StoreConfigError, match="must name an existing database"),
    ):
        p.check()


def test_a_held_lock_is_reported_busy_not_waited_on_forever(tracked: Tracker):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    with superuser() as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (ADVISORY_LOCK_CLASS, names.lock_key))
        with (
            PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER, lock_timeout=0.3) as p,
            pytest.raises(StoreBusy, match="another listener process is provisioning"),
        ):
            p.ensure(deployment_id, initial_credentials(names))
    assert snapshot(deployment_id)["roles"] == []


def test_a_statement_the_server_cancels_is_not_reported_as_an_unreachable_server(tracked: Tracker):
    """psycopg raises OperationalError for server-side conditions too (statement timeout, object in
    use, disk full, ...): those happen on a working connection, so "cannot connect ... check the host
    and port" (and the outage hold that comes with StoreUnreachable) would send the operator the wrong
    way and stall every other deployment."""
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    with superuser() as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (ADVISORY_LOCK_CLASS, names.lock_key))
        with (
            PostgresProvisioner(
                POSTGRES_URI, listener_id=LISTENER, lock_timeout=10, statement_timeout=0.3
            ) as p,
            pytest.raises(StoreError) as caught,
        ):
            p.ensure(deployment_id, initial_credentials(names))
    assert not isinstance(caught.value, StoreUnreachable), caught.value
    assert isinstance(caught.value, StoreBusy), caught.value
    message = str(caught.value)
    assert "cannot connect" not in message
    assert "statement timeout" in message
    assert snapshot(deployment_id)["roles"] == []


def test_rotation_of_an_unprovisioned_deployment_says_so(provisioner, tracked: Tracker):
    deployment_id = tracked.new()
    with pytest.raises(NotProvisioned, match="is not provisioned"):
        provisioner.begin_rotation(deployment_id, initial_credentials(StoreNames.of(deployment_id)))


def test_a_thousand_deployments_share_a_small_admin_pool(tracked: Tracker):
    """30 deployments from 8 threads through a pool of 2: never more than 2 admin connections."""
    app = f"lsdp-test-{uuid.uuid4().hex[:8]}"
    ids = [tracked.new() for _ in range(30)]
    peak = 0
    lock = threading.Lock()
    with PostgresProvisioner(POSTGRES_URI, listener_id=LISTENER, pool_size=2, application_name=app) as p:

        def count(step: str) -> None:
            nonlocal peak
            with superuser() as conn:
                (n,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
                ).fetchone()
            with lock:
                peak = max(peak, n)

        p._after_step = count  # observe the server's view at every step
        work = list(ids)
        errors: list[BaseException] = []

        def worker() -> None:
            while True:
                with lock:
                    if not work:
                        return
                    deployment_id = work.pop()
                try:
                    p.ensure(deployment_id, initial_credentials(StoreNames.of(deployment_id)))
                except BaseException as error:
                    errors.append(error)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert errors == []
        assert p.stats()["connections_num"] <= 2
    assert 1 <= peak <= 2
