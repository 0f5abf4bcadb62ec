"""RedisStore against the machine's real Redis (127.0.0.1:6379): prefixes, ACL users, teardown.

ACL users and keys are named from fresh deployment ids; `tracked` removes them afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from managed_support import REDIS_URI, Tracker, redis_admin
from redis.exceptions import AuthenticationError, NoPermissionError

from listener.managed import (
    Credentials,
    ForeignObject,
    InsufficientPrivileges,
    NotProvisioned,
    Ownership,
    RedisStore,
    StoreAuthError,
    StoreConfigError,
    StoreNames,
    StoreUnreachable,
    initial_credentials,
    new_password,
)
from listener.managed.names import REDIS_OWNERS_KEY

LISTENER = str(uuid.UUID(int=0xB0B))


@pytest.fixture
def admin() -> Iterator[redis.Redis]:
    client = redis_admin()
    yield client
    client.close()


@pytest.fixture
def acl_store() -> Iterator[RedisStore]:
    with RedisStore(REDIS_URI, listener_id=LISTENER, isolation="acl") as store:
        yield store


@pytest.fixture
def prefix_store() -> Iterator[RedisStore]:
    with RedisStore(REDIS_URI, listener_id=LISTENER, isolation="prefix") as store:
        yield store


def as_user(user: str, password: str) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=6379, username=user, password=password, decode_responses=True, socket_timeout=5
    )


def test_prefix_mode_records_ownership_and_creates_no_user(
    prefix_store: RedisStore, admin: redis.Redis, tracked: Tracker
):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    prefix_store.ensure(deployment_id, initial_credentials(names))
    prefix_store.ensure(deployment_id, initial_credentials(names))  # idempotent
    assert Ownership.decode(admin.hget(REDIS_OWNERS_KEY, names.redis_user)) == Ownership(
        LISTENER, deployment_id
    )
    assert admin.execute_command("ACL", "GETUSER", names.redis_user) is None


def test_an_acl_user_sees_only_its_own_prefix(acl_store: RedisStore, admin: redis.Redis, tracked: Tracker):
    first, second = tracked.new(), tracked.new()
    a, b = StoreNames.of(first), StoreNames.of(second)
    creds_a, creds_b = initial_credentials(a), initial_credentials(b)
    acl_store.ensure(first, creds_a)
    acl_store.ensure(second, creds_b)
    admin.set(b.redis_prefix + "run:1", "b's data")
    admin.set("unrelated:key", "x")
    with as_user(a.redis_user, creds_a.password.value) as client:
        client.set(a.redis_prefix + "run:1", "a's data")
        assert client.get(a.redis_prefix + "run:1") == "a's data"
        for forbidden in (
            lambda: client.get(b.redis_prefix + "run:1"),
            lambda: client.get("unrelated:key"),
            lambda: client.get(REDIS_OWNERS_KEY),
            lambda: client.hset(REDIS_OWNERS_KEY, a.redis_user, "forged"),
            lambda: client.flushall(),
            lambda: client.keys("*"),
            lambda: client.config_get("*"),
            lambda: client.publish(b.redis_prefix + "stream", "x"),
        ):
            with pytest.raises(NoPermissionError):
                forbidden()
        client.publish(a.redis_prefix + "stream", "ok")  # its own channels work
    with pytest.raises(AuthenticationError):
        as_user(a.redis_user, creds_b.password.value).ping()  # another deployment's password


def test_an_acl_user_cannot_flush_or_replace_what_other_deployments_run(
    acl_store: RedisStore, admin: redis.Redis, tracked: Tracker
):
    """Lua scripts and functions are server-wide, not per key: `+@all -@admin -@dangerous` still let one
    deployment flush every deployment's cached scripts, kill another's running script, or replace or
    delete the function libraries others call."""
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    creds = initial_credentials(names)
    acl_store.ensure(deployment_id, creds)
    with as_user(names.redis_user, creds.password.value) as client:
        for command in (
            ("SCRIPT", "FLUSH"),
            ("SCRIPT", "KILL"),
            ("FUNCTION", "FLUSH"),
            ("FUNCTION", "DELETE", "somebody_elses_library"),
            ("FUNCTION", "LOAD", "REPLACE", "#!lua name=x\nredis.register_function('f', function() end)"),
            ("FUNCTION", "KILL"),
        ):
            with pytest.raises(NoPermissionError):
                client.execute_command(*command)
        # Its own scripts still work.
        key = names.redis_prefix + "counter"
        assert client.eval("return redis.call('INCR', KEYS[1])", 1, key) == 1
        sha = client.script_load("return redis.call('GET', KEYS[1])")
        assert client.evalsha(sha, 1, key) == "1"


def test_re_provisioning_keeps_a_rotations_second_password(acl_store: RedisStore, tracked: Tracker):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    old = initial_credentials(names)
    acl_store.ensure(deployment_id, old)
    new = Credentials(names.login_roles[1], new_password())
    acl_store.begin_rotation(deployment_id, new)
    acl_store.ensure(deployment_id, new)  # the reconcile loop runs meanwhile
    for creds in (old, new):
        assert as_user(names.redis_user, creds.password.value).ping()
    acl_store.finish_rotation(deployment_id, new)
    assert as_user(names.redis_user, new.password.value).ping()
    with pytest.raises(AuthenticationError):
        as_user(names.redis_user, old.password.value).ping()


def test_teardown_delete_removes_only_the_deployments_keys_in_bounded_batches(
    admin: redis.Redis, tracked: Tracker
):
    deployment_id, neighbour = tracked.new(), tracked.new()
    names, other = StoreNames.of(deployment_id), StoreNames.of(neighbour)
    with RedisStore(REDIS_URI, listener_id=LISTENER, isolation="acl", max_keys_per_teardown=100) as store:
        store.ensure(deployment_id, initial_credentials(names))
        store.ensure(neighbour, initial_credentials(other))
        admin.mset({f"{names.redis_prefix}k{i}": i for i in range(1200)})
        admin.mset({f"{other.redis_prefix}k{i}": i for i in range(10)})
        admin.set(names.redis_prefix.rstrip(":"), "no colon: not under the prefix")
        reports = []
        for _ in range(50):  # bounded: each call deletes ~100, so about a dozen calls
            reports.append(store.teardown(deployment_id, "delete"))
            if reports[-1].complete:
                break
    assert reports[-1].complete
    assert len(reports) > 1, "the key budget did not bound a call"
    assert sum(r.keys_deleted for r in reports) == 1200
    assert not any(r.complete for r in reports[:-1])
    assert f"ACL user {names.redis_user}" in reports[0].removed
    assert list(admin.scan_iter(match=names.redis_prefix + "*")) == []
    assert admin.get(names.redis_prefix.rstrip(":")) == "no colon: not under the prefix"
    assert len(list(admin.scan_iter(match=other.redis_prefix + "*"))) == 10
    assert admin.hget(REDIS_OWNERS_KEY, names.redis_user) is None
    assert admin.hget(REDIS_OWNERS_KEY, other.redis_user) is not None
    assert admin.execute_command("ACL", "GETUSER", names.redis_user) is None
    admin.delete(names.redis_prefix.rstrip(":"))


def test_teardown_retain_keeps_keys_and_disables_the_user(
    acl_store: RedisStore, admin: redis.Redis, tracked: Tracker
):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    creds = initial_credentials(names)
    acl_store.ensure(deployment_id, creds)
    admin.set(names.redis_prefix + "keep", "1")
    report = acl_store.teardown(deployment_id, "retain")
    assert report.kept == (f"keys {names.redis_prefix}*", f"ACL user {names.redis_user} (disabled)")
    assert admin.get(names.redis_prefix + "keep") == "1"
    with pytest.raises(AuthenticationError):
        as_user(names.redis_user, creds.password.value).ping()
    acl_store.ensure(deployment_id, creds)  # provisioning again turns it back on
    assert as_user(names.redis_user, creds.password.value).get(names.redis_prefix + "keep") == "1"


def test_another_listeners_prefix_is_never_touched(
    acl_store: RedisStore, admin: redis.Redis, tracked: Tracker
):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    admin.hset(REDIS_OWNERS_KEY, names.redis_user, Ownership(str(uuid.uuid4()), deployment_id).encode())
    admin.set(names.redis_prefix + "theirs", "1")
    with pytest.raises(ForeignObject, match="recorded for listener"):
        acl_store.ensure(deployment_id, initial_credentials(names))
    report = acl_store.teardown(deployment_id, "delete")
    assert report.removed == ()
    assert report.foreign == (f"keys {names.redis_prefix}*", f"ACL user {names.redis_user}")
    assert admin.get(names.redis_prefix + "theirs") == "1"


def test_a_preexisting_acl_user_with_our_name_is_refused(
    acl_store: RedisStore, admin: redis.Redis, tracked: Tracker
):
    deployment_id = tracked.new()
    names = StoreNames.of(deployment_id)
    admin.execute_command("ACL", "SETUSER", names.redis_user, "on", ">theirs", "~*", "+@all")
    with pytest.raises(ForeignObject, match="not created by this listener"):
        acl_store.ensure(deployment_id, initial_credentials(names))
    assert as_user(names.redis_user, "theirs").ping()  # untouched


def test_rotation_needs_a_provisioned_user(acl_store: RedisStore, tracked: Tracker):
    deployment_id = tracked.new()
    with pytest.raises(NotProvisioned):
        acl_store.begin_rotation(deployment_id, initial_credentials(StoreNames.of(deployment_id)))


def test_an_admin_user_without_acl_rights_gets_a_typed_error(admin: redis.Redis, tracked: Tracker):
    deployment_id = tracked.new()
    user = f"t-admin-{uuid.uuid4().hex[:10]}"
    admin.execute_command("ACL", "SETUSER", user, "on", ">pw-limited", "~*", "&*", "+@all", "-@admin")
    try:
        uri = f"redis://{user}:pw-limited@127.0.0.1:6379/0"
        with (
            RedisStore(uri, listener_id=LISTENER, isolation="acl") as store,
            pytest.raises(InsufficientPrivileges) as caught,
        ):
            store.ensure(deployment_id, initial_credentials(StoreNames.of(deployment_id)))
        assert str(caught.value).startswith("Redis 127.0.0.1:6379: ")
        assert "pw-limited" not in str(caught.value)
        # Prefix mode needs no admin commands: the same user is enough there.
        with RedisStore(uri, listener_id=LISTENER, isolation="prefix") as store:
            store.ensure(deployment_id, initial_credentials(StoreNames.of(deployment_id)))
    finally:
        admin.execute_command("ACL", "DELUSER", user)


def test_wrong_admin_credentials_and_unreachable_servers_are_typed_errors_without_secrets():
    with (
        RedisStore("redis://nobody:hunter2-secret@127.0.0.1:6379/0", listener_id=LISTENER) as store,
        pytest.raises(StoreAuthError) as caught,
    ):
        store.check()
    assert "hunter2" not in str(caught.value)
    with (
        RedisStore("redis://:hunter2-secret@127.0.0.1:1/0", listener_id=LISTENER, timeout=2) as store,
        pytest.raises(StoreUnreachable, match=r"^Redis 127\.0\.0\.1:1: cannot connect") as caught,
    ):
        store.ensure("d", initial_credentials(StoreNames.of("d")))
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "query", ["socket_timeout=abc", "health_check_interval=soon", "max_connections=many"]
)
def test_an_admin_uri_redis_py_cannot_parse_is_a_config_error_naming_the_variable(query: str):
    with pytest.raises(StoreConfigError, match=r"^Redis \(LISTENER_REDIS_ADMIN_URI\): ") as caught:
        RedisStore(f"redis://:hunter2-secret@127.0.0.1:6379/0?{query}", listener_id=LISTENER)
    assert query.split("=")[0] in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_tls_to_a_server_without_tls_says_so():
    # Redis answers a TLS ClientHello with silence, so the handshake runs into the timeout.
    with (
        RedisStore("rediss://127.0.0.1:6379/0", listener_id=LISTENER, timeout=1) as store,
        pytest.raises(StoreUnreachable, match="does not speak TLS"),
    ):
        store.check()
