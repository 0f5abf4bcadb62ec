"""The pure core of managed stores: names, ownership records, URIs, the Agent Server env, the Secret."""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urlsplit

import pytest
from psycopg.conninfo import conninfo_to_dict

from listener.managed import (
    ANNOTATION_ROTATING_FROM,
    ENV_POSTGRES_URI,
    ENV_REDIS_PREFIX,
    ENV_REDIS_URI,
    Credentials,
    CredentialsSecretError,
    Ownership,
    PostgresTarget,
    RedisTarget,
    StoreConfigError,
    StoreNames,
    agent_server_env,
    initial_credentials,
    new_password,
    read_secret,
    secret_data,
)
from listener.managed.postgres import (
    DatabaseState,
    PostgresState,
    RoleState,
    database_verdict,
    format_version,
    role_verdict,
)
from listener.managed.redis_store import acl_rules, match_pattern, password_rule
from listener.managed.rotation import credentials_secret_manifest
from listener.managed.targets import POD_CA_FILE
from listener.settings import SettingsError, load_settings
from listener.spec import SecretValue

HOSTILE_IDS = [
    "x'; DROP DATABASE postgres; --",
    '"; DROP ROLE postgres; --',
    'Robert"); DROP TABLE students;--',
    "line\nbreak\r\tand tab",
    "nul\x00byte",
    "ünïcödé-部署-🚀",
    "$1 %s {} \\ ` $$ $tag$",
    "a" * 256,
    " leading space",
]
PG_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@pytest.mark.parametrize("deployment_id", ["b0f6f403-0000-4000-8000-000000000001", *HOSTILE_IDS])
def test_names_are_plain_identifiers_whatever_the_id(deployment_id: str):
    names = StoreNames.of(deployment_id)
    for name in (names.database, names.owner_role, *names.login_roles, names.redis_user):
        assert PG_IDENTIFIER.match(name), name
    assert re.fullmatch(r"lsdp:[0-9a-f]{32}:", names.redis_prefix)
    assert -(2**31) <= names.lock_key < 2**31
    assert StoreNames.of(deployment_id) == names  # deterministic


def test_names_differ_per_deployment_and_login_roles_alternate():
    a, b = StoreNames.of("dep-a"), StoreNames.of("dep-b")
    assert len({a.database, b.database, a.redis_prefix, b.redis_prefix}) == 4
    assert a.other_login_role(a.login_roles[0]) == a.login_roles[1]
    assert a.other_login_role(a.login_roles[1]) == a.login_roles[0]
    with pytest.raises(ValueError, match="not one of"):
        a.other_login_role(b.login_roles[0])


@pytest.mark.parametrize("bad", ["", "   ", "a" * 257])
def test_empty_or_huge_ids_are_refused_with_the_reason(bad: str):
    with pytest.raises(ValueError, match="deployment id"):
        StoreNames.of(bad)


@pytest.mark.parametrize("deployment_id", HOSTILE_IDS)
def test_ownership_record_round_trips_hostile_ids_as_plain_ascii(deployment_id: str):
    record = Ownership("listener-1", deployment_id)
    text = record.encode()
    assert text.isascii()
    assert "\n" not in text
    assert "\x00" not in text
    assert Ownership.decode(text) == record


@pytest.mark.parametrize(
    "comment",
    [
        None,
        "",
        "created by hand",
        "langsmith-dataplane-listener not-json",
        'langsmith-dataplane-listener {"x": 1}',
    ],
)
def test_comments_that_are_not_our_record_decode_to_none(comment: str | None):
    assert Ownership.decode(comment) is None


def _state(
    *, owner_record: Ownership | None, db_owner: str | None, db_record: Ownership | None
) -> PostgresState:
    names = StoreNames.of("d")
    return PostgresState(
        RoleState(names.owner_role, owner_record is not None or db_owner is not None, owner_record),
        (RoleState(names.login_roles[0], False), RoleState(names.login_roles[1], False)),
        DatabaseState(names.database, db_owner is not None, db_owner, db_record),
    )


def test_database_verdicts():
    ours = Ownership("L", "d")
    other = Ownership("other-listener", "d")
    owner = StoreNames.of("d").owner_role
    assert database_verdict(_state(owner_record=ours, db_owner=None, db_record=None), ours) == "absent"
    assert database_verdict(_state(owner_record=ours, db_owner=owner, db_record=ours), ours) == "ours"
    # Crash between CREATE DATABASE and COMMENT: owned by our marked role, no comment yet.
    assert database_verdict(_state(owner_record=ours, db_owner=owner, db_record=None), ours) == "ours"
    # Someone else's database that happens to have our name.
    assert database_verdict(_state(owner_record=ours, db_owner="postgres", db_record=None), ours) == "foreign"
    # Our comment copied onto a database someone else owns is not enough.
    assert database_verdict(_state(owner_record=ours, db_owner="postgres", db_record=ours), ours) == "foreign"
    assert database_verdict(_state(owner_record=other, db_owner=owner, db_record=None), ours) == "foreign"
    assert role_verdict(RoleState("r", True, None), ours) == "foreign"
    assert role_verdict(RoleState("r", True, other), ours) == "foreign"
    assert role_verdict(RoleState("r", False), ours) == "absent"


@pytest.mark.parametrize(
    ("version", "text"), [(150008, "15.8"), (150020, "15.20"), (90624, "9.6.24"), (170000, "17.0")]
)
def test_format_version(version: int, text: str):
    assert format_version(version) == text


def test_postgres_target_keeps_what_pods_need_and_drops_listener_only_paths():
    target = PostgresTarget.from_admin_uri(
        "postgresql://admin:p%40ss@db.example.internal:6543/postgres?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    )
    assert (target.host, target.port) == ("db.example.internal", 6543)
    # A file in the listener's pod is not in the agent's: its contents travel in the credentials
    # Secret, mounted where the pods' URI points.
    assert dict(target.params) == {"sslmode": "verify-full", "sslrootcert": POD_CA_FILE}
    assert target.ca_file == "/etc/ca.pem"
    assert target.display == "PostgreSQL db.example.internal:6543"
    system = PostgresTarget.from_admin_uri(
        "host=db port=5432 user=a password=b sslmode=verify-full sslrootcert=system"
    )
    assert dict(system.params) == {"sslmode": "verify-full", "sslrootcert": "system"}
    assert system.ca_file is None
    assert system.ca_pem() is None


def test_a_ca_file_that_is_missing_or_not_pem_is_a_config_error_naming_it(tmp_path):
    missing = PostgresTarget.from_admin_uri(f"postgresql://a:b@db/postgres?sslrootcert={tmp_path}/none.pem")
    with pytest.raises(StoreConfigError, match=r"sslrootcert=.*none.pem cannot be read"):
        missing.ca_pem()
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(StoreConfigError, match="holds no PEM certificate"):
        PostgresTarget.from_admin_uri(f"postgresql://a:b@db/postgres?sslrootcert={junk}").ca_pem()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("postgresql://u:sec ret@h/x", "not a valid connection URI"),
        ("postgresql://u:secret@/x", "names no host"),
        ("postgresql://u:secret@h1,h2/x", "several hosts"),
        ("not a uri at all secret", "not a valid connection URI"),
    ],
)
def test_bad_postgres_admin_uris_are_named_without_echoing_the_password(uri: str, message: str):
    with pytest.raises(StoreConfigError, match=message) as caught:
        PostgresTarget.from_admin_uri(uri)
    assert "secret" not in str(caught.value)
    assert "sec ret" not in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://:secret@h:6379", "redis:// or rediss://"),
        ("redis://:secret@h:notaport", "not a valid URI"),
        ("redis://:secret@h:6379/notadb", "database number"),
        ("redis:///0", "names no host"),
    ],
)
def test_bad_redis_admin_uris_are_named_without_echoing_the_password(uri: str, message: str):
    with pytest.raises(StoreConfigError, match=message) as caught:
        RedisTarget.from_admin_uri(uri)
    assert "secret" not in str(caught.value)


def test_agent_server_env_points_at_the_deployments_own_database_and_prefix():
    names = StoreNames.of("dep-1")
    creds = Credentials(names.login_roles[1], SecretValue("p@ss:w/rd?#%"))
    pg = PostgresTarget.from_admin_uri("postgresql://admin:x@db.internal:5432/postgres?sslmode=require")
    rd = RedisTarget.from_admin_uri("rediss://admin:adminpw@cache.internal:6380/0")
    env = agent_server_env(names, creds, pg, rd, "acl")
    assert set(env) == {ENV_POSTGRES_URI, ENV_REDIS_URI, ENV_REDIS_PREFIX}
    # libpq parses it back to exactly these parts (the password survives percent-encoding).
    parsed = conninfo_to_dict(env[ENV_POSTGRES_URI])
    assert parsed == {
        "user": names.login_roles[1],
        "password": "p@ss:w/rd?#%",
        "host": "db.internal",
        "port": "5432",
        "dbname": names.database,
        "sslmode": "require",
    }
    redis_uri = urlsplit(env[ENV_REDIS_URI])
    assert (redis_uri.scheme, redis_uri.hostname, redis_uri.port, redis_uri.path) == (
        "rediss",
        "cache.internal",
        6380,
        "/0",
    )
    assert (unquote(redis_uri.username or ""), unquote(redis_uri.password or "")) == (
        names.redis_user,
        "p@ss:w/rd?#%",
    )
    assert env[ENV_REDIS_PREFIX] == names.redis_prefix
    # prefix mode: the shared connection, exactly as configured.
    assert (
        agent_server_env(names, creds, pg, rd, "prefix")[ENV_REDIS_URI]
        == "rediss://admin:adminpw@cache.internal:6380/0"
    )


def test_ipv6_hosts_are_bracketed():
    names = StoreNames.of("d")
    creds = Credentials(names.login_roles[0], SecretValue("pw"))
    pg = PostgresTarget.from_admin_uri("postgresql://a:b@[fd00::1]:5432/postgres")
    rd = RedisTarget.from_admin_uri("redis://[fd00::2]:6379/0")
    env = agent_server_env(names, creds, pg, rd, "acl")
    assert conninfo_to_dict(env[ENV_POSTGRES_URI])["host"] == "fd00::1"
    assert urlsplit(env[ENV_REDIS_URI]).hostname == "fd00::2"


def test_passwords_are_random_url_safe_and_hidden_from_repr():
    a, b = new_password(), new_password()
    assert a != b
    assert len(a.value) >= 43
    assert re.fullmatch(r"[A-Za-z0-9_-]+", a.value)
    creds = initial_credentials(StoreNames.of("d"))
    assert creds.password.value not in repr(creds)
    assert creds.role == StoreNames.of("d").login_roles[0]


def _env() -> dict[str, str]:
    return {ENV_POSTGRES_URI: "postgresql://x", ENV_REDIS_URI: "redis://x", ENV_REDIS_PREFIX: "p:"}


def test_secret_round_trip_through_the_api_servers_base64_data():
    names = StoreNames.of("d")
    creds = Credentials(names.login_roles[1], SecretValue("s3cret"))
    data = secret_data(creds, _env())
    as_returned = {
        "metadata": {
            "name": "n",
            "namespace": "agents",
            "annotations": {ANNOTATION_ROTATING_FROM: names.login_roles[0]},
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    stored = read_secret(as_returned, names)
    assert stored.credentials == creds
    assert stored.rotating_from == names.login_roles[0]
    with pytest.raises(ValueError, match="REDIS_KEY_PREFIX"):
        secret_data(creds, {ENV_POSTGRES_URI: "x", ENV_REDIS_URI: "y"})


@pytest.mark.parametrize(
    ("data", "annotations", "message"),
    [
        ({"postgres-role": "someone_else", "password": "x"}, {}, "postgres-role"),
        ({"postgres-role": "ROLE_A"}, {}, "'password' is missing"),
        (
            {"postgres-role": "ROLE_A", "password": "x"},
            {ANNOTATION_ROTATING_FROM: "postgres"},
            "rotating-from",
        ),
    ],
)
def test_unusable_secrets_name_the_secret_and_key(data: dict, annotations: dict, message: str):
    names = StoreNames.of("d")
    data = {k: (names.login_roles[0] if v == "ROLE_A" else v) for k, v in data.items()}
    secret = {
        "metadata": {"name": "n", "namespace": "agents", "annotations": annotations},
        "stringData": data,
    }
    with pytest.raises(CredentialsSecretError, match=message) as caught:
        read_secret(secret, names)
    assert "Secret agents/n" in str(caught.value)


def test_rotation_manifest_keeps_labels_and_annotations_and_sets_or_clears_the_marker():
    names = StoreNames.of("d")
    existing = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "n",
            "namespace": "agents",
            "labels": {"a": "1"},
            "annotations": {"keep": "me"},
            "resourceVersion": "7",
            "managedFields": [{}],
            "uid": "u",
        },
        "data": {},
    }
    creds = Credentials(names.login_roles[1], SecretValue("pw"))
    marked = credentials_secret_manifest(existing, creds, _env(), rotating_from=names.login_roles[0])
    assert marked["metadata"] == {
        "name": "n",
        "namespace": "agents",
        "labels": {"a": "1"},
        "annotations": {"keep": "me", ANNOTATION_ROTATING_FROM: names.login_roles[0]},
    }
    assert marked["stringData"]["postgres-role"] == names.login_roles[1]
    cleared = credentials_secret_manifest(marked, creds, _env(), rotating_from=None)
    assert cleared["metadata"]["annotations"] == {"keep": "me"}


def test_match_pattern_escapes_glob_characters():
    assert match_pattern("lsdp:ab:") == "lsdp:ab:*"
    assert match_pattern("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\*"


def test_acl_rules_confine_keys_and_channels_and_never_send_the_plaintext():
    names = StoreNames.of("d")
    rules = acl_rules(names, "plaintext-password")
    assert "plaintext-password" not in " ".join(rules)
    assert password_rule("plaintext-password") in rules
    assert f"~{names.redis_prefix}*" in rules
    assert f"&{names.redis_prefix}*" in rules
    assert rules.index("resetkeys") < rules.index(f"~{names.redis_prefix}*")
    assert rules[-5:] == ["-@admin", "-@dangerous", "-script|flush", "-script|kill", "-function"]
    assert "resetpass" not in rules  # a rotation's second password must survive a re-provision


BASE_ENV = {
    "LISTENER_API_KEY": "lsv2_test",
    "LISTENER_WORKSPACE_ID": "0a000000-0000-4000-8000-00000000000a",
    "LISTENER_LISTENER_ID": "0b000000-0000-4000-8000-00000000000b",
    "LISTENER_REGION": "us",
    "LISTENER_NAMESPACES": "agents",
}


def test_managed_settings_accept_both_uris_and_the_isolation_choice():
    settings = load_settings(
        {
            **BASE_ENV,
            "LISTENER_STORE_MODE": "managed",
            "LISTENER_POSTGRES_ADMIN_URI": "postgresql://admin:pw@db:5432/postgres?sslmode=verify-full",
            "LISTENER_REDIS_ADMIN_URI": "rediss://:tok@cache:6379/0",
            "LISTENER_REDIS_ISOLATION": "acl",
        }
    )
    assert settings.store_mode == "managed"
    assert settings.redis_isolation == "acl"
    assert "pw" not in repr(settings.postgres_admin_uri)
    assert "tok" not in repr(settings)
    assert settings.managed_admin_connections == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "LISTENER_STORE_MODE=managed needs LISTENER_POSTGRES_ADMIN_URI"),
        (
            {"LISTENER_POSTGRES_ADMIN_URI": "postgresql://a:hunter2@db/postgres"},
            "needs LISTENER_REDIS_ADMIN_URI",
        ),
        (
            {
                "LISTENER_POSTGRES_ADMIN_URI": "postgresql://a:hun ter2@db/x",
                "LISTENER_REDIS_ADMIN_URI": "redis://h",
            },
            "LISTENER_POSTGRES_ADMIN_URI is not a valid connection URI",
        ),
        (
            {
                "LISTENER_POSTGRES_ADMIN_URI": "postgresql://a:b@db/x",
                "LISTENER_REDIS_ADMIN_URI": "https://:hunter2@h",
            },
            "LISTENER_REDIS_ADMIN_URI must start with redis://",
        ),
        (
            {
                "LISTENER_POSTGRES_ADMIN_URI": "postgresql://a:b@db/x",
                "LISTENER_REDIS_ADMIN_URI": "redis://h",
                "LISTENER_REDIS_ISOLATION": "database",
            },
            "LISTENER_REDIS_ISOLATION='database'",
        ),
    ],
)
def test_managed_settings_errors_name_the_variable_and_never_the_secret(extra: dict[str, str], message: str):
    with pytest.raises(SettingsError) as caught:
        load_settings({**BASE_ENV, "LISTENER_STORE_MODE": "managed", **extra})
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "hun ter2" not in str(caught.value)


def test_a_bad_admin_uri_field_error_never_echoes_the_value():
    with pytest.raises(SettingsError) as caught:
        load_settings({**BASE_ENV, "LISTENER_POSTGRES_ADMIN_URI": ["not", "a", "string", "hunter2"]})  # type: ignore[dict-item]
    assert "LISTENER_POSTGRES_ADMIN_URI" in str(caught.value)
    assert "hunter2" not in str(caught.value)
