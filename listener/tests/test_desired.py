"""Desired state, table-driven: what is ours, where it goes, when it changed, and what spec it becomes.

Everything here is pure, so deployments are built from plain dicts with `Deployment.model_validate`
(the same path a control-plane response takes) and nothing touches the network.
"""

from __future__ import annotations

import copy
from typing import Any
from uuid import UUID

import pytest

from listener.controlplane.listing import UnreadableDeployment, read_item
from listener.controlplane.models import Deployment
from listener.desired import (
    Placement,
    Platform,
    agent_server_spec,
    changed,
    fingerprint,
    place,
    refuse_unreadable,
    resource_spec,
)
from listener.spec import ResourceSpec, SecretReference, SecretValue

LISTENER = UUID("11111111-1111-4111-8111-111111111111")
OTHER_LISTENER = UUID("22222222-2222-4222-8222-222222222222")
TENANT = "33333333-3333-4333-8333-333333333333"
REVISION = "44444444-4444-4444-8444-444444444444"
NEW_REVISION = "55555555-5555-4555-8555-555555555555"
IMAGE = "registry.example.com/agents/support@sha256:" + "1" * 64
USER_SECRET = "sk-user-secret-value-do-not-leak"
API_KEY = "lsv2_pt_platform_key_do_not_leak"
PASSWORD = "postgres-password-do-not-leak"

PLATFORM = Platform(
    listener_id=str(LISTENER),
    langsmith_endpoint="https://api.smith.langchain.com",
    api_key=SecretValue(API_KEY),
)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts merge; any other value (including None) replaces. `...` deletes the key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is ...:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def deployment(number: int = 1, **overrides: Any) -> Deployment:
    base: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "tenant_id": TENANT,
        "name": f"agent-{number}",
        "source": "external_docker",
        "source_config": {"listener_id": str(LISTENER), "listener_config": {"k8s_namespace": "agents"}},
        "source_revision_config": {"image_uri": IMAGE},
        "secrets": [{"name": "OPENAI_API_KEY", "value": USER_SECRET}],
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "status": "READY",
        "latest_revision_id": REVISION,
        "active_revision_id": None,
    }
    return Deployment.model_validate(_merge(base, overrides))


# --- place() -----------------------------------------------------------------------------------

NO_NAMESPACE = {"source_config": {"listener_config": None}}

PLACE_CASES: list[tuple[str, dict[str, Any], tuple[str, ...], str | None, list[str]]] = [
    # (case, overrides, watched namespaces, placed in namespace (None = not placed), refusal must mention)
    ("ours, namespace watched", {}, ("agents",), "agents", []),
    ("ours, second of two watched", {}, ("other", "agents"), "agents", []),
    (
        "other listener: not ours, silently",
        {"source_config": {"listener_id": str(OTHER_LISTENER)}},
        ("agents",),
        None,
        [],
    ),
    ("no listener: not ours", {"source_config": {"listener_id": None}}, ("agents",), None, []),
    ("github source: not ours", {"source": "github"}, ("agents",), None, []),
    ("internal_docker source: not ours", {"source": "internal_docker"}, ("agents",), None, []),
    ("no listener_config, one watched", NO_NAMESPACE, ("solo",), "solo", []),
    (
        "listener_config without namespace, one watched",
        {"source_config": {"listener_config": {"k8s_namespace": None}}},
        ("solo",),
        "solo",
        [],
    ),
    (
        "no namespace, several watched",
        NO_NAMESPACE,
        ("agents", "agents-b"),
        None,
        ["names no namespace", "agents, agents-b"],
    ),
    (
        "namespace not watched",
        {"source_config": {"listener_config": {"k8s_namespace": "elsewhere"}}},
        ("agents", "agents-b"),
        None,
        ["'elsewhere' is not watched", "agents, agents-b"],
    ),
    ("no image", {"source_revision_config": {"image_uri": None}}, ("agents",), None, ["no image_uri"]),
    ("empty image", {"source_revision_config": {"image_uri": ""}}, ("agents",), None, ["no image_uri"]),
    # The namespace defaulting must not skip the image check (it did: the spec then raised mid-cycle).
    (
        "no image, namespace defaulted",
        {**NO_NAMESPACE, "source_revision_config": {"image_uri": None}},
        ("solo",),
        None,
        ["no image_uri"],
    ),
    ("no revision yet", {"latest_revision_id": None}, ("agents",), None, ["no revision"]),
]


@pytest.mark.parametrize(
    ("overrides", "watched", "placed_in", "reasons"),
    [case[1:] for case in PLACE_CASES],
    ids=[case[0] for case in PLACE_CASES],
)
def test_place(
    overrides: dict[str, Any], watched: tuple[str, ...], placed_in: str | None, reasons: list[str]
):
    subject = deployment(**overrides)
    placed, refused = place([subject], LISTENER, watched)

    if placed_in is not None:
        assert [(p.deployment_id, p.namespace) for p in placed] == [(str(subject.id), placed_in)]
        assert refused == []
    else:
        assert placed == []
    if reasons:
        assert [r.deployment_id for r in refused] == [str(subject.id)]
        assert refused[0].revision_id == (
            str(subject.latest_revision_id) if subject.latest_revision_id else None
        )
        for fragment in reasons:
            assert fragment in refused[0].reason
    elif placed_in is None:
        assert refused == [], "deployments that are not ours are neither placed nor refused"


def test_place_sorts_by_id_and_keeps_every_verdict() -> None:
    deployments = [
        deployment(3),
        deployment(1, source_config={"listener_config": {"k8s_namespace": "elsewhere"}}),
        deployment(2),
        deployment(4, source_config={"listener_id": str(OTHER_LISTENER)}),
        deployment(5, source_revision_config={"image_uri": None}),
    ]
    placed, refused = place(deployments, LISTENER, iter(["agents"]))  # any iterable of namespaces
    assert [p.deployment.name for p in placed] == ["agent-2", "agent-3"]
    assert [r.deployment_id for r in refused] == [str(deployments[1].id), str(deployments[4].id)]


def test_placement_ids_are_strings() -> None:
    placement = Placement(deployment(), "agents")
    assert placement.deployment_id == "00000000-0000-4000-8000-000000000001"
    assert placement.revision_id == REVISION
    assert Placement(deployment(latest_revision_id=None), "agents").revision_id is None


# --- fingerprint() and changed() -----------------------------------------------------------------

MOVES_FINGERPRINT: list[tuple[str, dict[str, Any]]] = [
    ("new revision", {"latest_revision_id": NEW_REVISION}),
    ("new image", {"source_revision_config": {"image_uri": IMAGE.replace("1" * 64, "2" * 64)}}),
    ("secret value", {"secrets": [{"name": "OPENAI_API_KEY", "value": "sk-rotated"}]}),
    (
        "secret added",
        {"secrets": [{"name": "OPENAI_API_KEY", "value": USER_SECRET}, {"name": "X", "value": "y"}]},
    ),
    ("secret removed", {"secrets": []}),
    ("secret reference", {"secret_references": [{"name": "DB", "secret_name": "db", "secret_key": "uri"}]}),
    ("resource_spec", {"source_config": {"resource_spec": {"cpu": 2.0}}}),
    ("resource_spec labels", {"source_config": {"resource_spec": {"labels": {"team": "a"}}}}),
    ("name", {"name": "renamed"}),
]

KEEPS_FINGERPRINT: list[tuple[str, dict[str, Any]]] = [
    # The control plane moves updated_at (and the statuses) when the data plane reports status.
    ("updated_at", {"updated_at": "2026-02-02T12:00:00Z"}),
    ("status", {"status": "AWAITING_DATABASE"}),
    ("active revision", {"active_revision_id": REVISION}),
    ("unknown extra field", {"some_new_field": {"x": 1}}),
    ("secrets reordered", {"secrets": [{"name": "OPENAI_API_KEY", "value": USER_SECRET}]}),
]


@pytest.mark.parametrize(
    "overrides", [c[1] for c in MOVES_FINGERPRINT], ids=[c[0] for c in MOVES_FINGERPRINT]
)
def test_fingerprint_moves_with_what_we_render(overrides: dict[str, Any]) -> None:
    assert fp(deployment(**overrides)) != fp(deployment())


def fp(d: Any, namespace: str = "agents") -> Any:
    return fingerprint(Placement(d, namespace))


def test_fingerprint_moves_with_the_placement() -> None:
    # Issue 10: a deployment moved to another namespace or listener in place must be noticed.
    assert fp(deployment(), "agents-b") != fp(deployment(), "agents")
    other_listener = {"source_config": {"listener_id": "00000000-0000-4000-8000-0000000000ff"}}
    assert fp(deployment(**other_listener)) != fp(deployment())


@pytest.mark.parametrize(
    "overrides", [c[1] for c in KEEPS_FINGERPRINT], ids=[c[0] for c in KEEPS_FINGERPRINT]
)
def test_fingerprint_ignores_bookkeeping(overrides: dict[str, Any]) -> None:
    assert fp(deployment(**overrides)) == fp(deployment())


def test_fingerprint_is_order_insensitive_and_never_shows_a_secret() -> None:
    a = deployment(secrets=[{"name": "A", "value": "1"}, {"name": "B", "value": USER_SECRET}])
    b = deployment(secrets=[{"name": "B", "value": USER_SECRET}, {"name": "A", "value": "1"}])
    assert fp(a) == fp(b)
    assert fp(a)[0] == REVISION
    assert USER_SECRET not in repr(fp(a))


def test_changed_reports_new_and_moved_placements_only() -> None:
    quiet, moved, new = deployment(1), deployment(2), deployment(3)
    previous = {str(d.id): fp(d) for d in (quiet, moved)}
    now = [
        Placement(deployment(1, updated_at="2026-03-03T00:00:00Z"), "agents"),
        Placement(deployment(2, latest_revision_id=NEW_REVISION), "agents"),
        Placement(new, "agents"),
    ]
    assert [p.deployment_id for p in changed(previous, now)] == [str(moved.id), str(new.id)]
    assert changed({}, []) == []
    assert changed(previous, [Placement(quiet, "agents")]) == []


# --- agent_server_spec() -----------------------------------------------------------------------


def _spec(subject: Deployment | None = None, platform: Platform = PLATFORM, namespace: str = "agents"):
    return agent_server_spec(Placement(subject or deployment(), namespace), platform, SecretValue(PASSWORD))


def test_spec_identity_and_platform_env() -> None:
    subject = deployment(name="support")
    spec = _spec(subject, namespace="agents-b")
    assert (spec.deployment_id, spec.deployment_name, spec.revision_id) == (
        str(subject.id),
        "support",
        REVISION,
    )
    assert (spec.tenant_id, spec.listener_id, spec.namespace, spec.image) == (
        TENANT,
        str(LISTENER),
        "agents-b",
        IMAGE,
    )
    env = dict(spec.platform_env)
    assert env == {
        "LANGSMITH_DEPLOYMENT_NAME": "support",
        "LANGSMITH_HOST_PROJECT_ID": str(subject.id),
        "LANGSMITH_HOST_PROJECT_NAME": "support",
        "LANGSMITH_HOST_REVISION_ID": REVISION,
        "LANGSMITH_TENANT_ID": TENANT,
        "LANGSMITH_WORKSPACE_ID": TENANT,
        "LANGCHAIN_PROJECT": "support",
        "LANGSMITH_PROJECT": "support",
        "LANGCHAIN_TRACING_V2": "true",
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": "https://api.smith.langchain.com",
        "LANGCHAIN_ENDPOINT": "https://api.smith.langchain.com",
    }
    assert [k for k, _ in spec.platform_env] == sorted(env), "sorted, so renders are deterministic"
    assert [(k, v.value) for k, v in spec.platform_secrets] == [
        ("LANGCHAIN_API_KEY", API_KEY),
        ("LANGSMITH_API_KEY", API_KEY),
    ]
    assert "LANGSMITH_API_KEY" not in env, "the API key travels only as a secret"
    assert spec.postgres_password == SecretValue(PASSWORD)


def test_spec_without_endpoint_key_or_tracing() -> None:
    platform = Platform(listener_id=str(LISTENER), langsmith_endpoint=None, api_key=None, tracing=False)
    spec = _spec(platform=platform)
    env = dict(spec.platform_env)
    assert "LANGSMITH_ENDPOINT" not in env
    assert "LANGCHAIN_ENDPOINT" not in env
    assert env["LANGSMITH_TRACING"] == env["LANGCHAIN_TRACING_V2"] == "false"
    assert spec.platform_secrets == ()


def test_a_user_secret_of_the_same_name_wins() -> None:
    subject = deployment(
        secrets=[
            {"name": "LANGSMITH_API_KEY", "value": "user-own-key"},
            {"name": "LANGSMITH_PROJECT", "value": "my-project"},
        ]
    )
    spec = _spec(subject)
    assert "LANGSMITH_PROJECT" not in dict(spec.platform_env)
    assert "LANGCHAIN_PROJECT" in dict(spec.platform_env)
    assert [k for k, _ in spec.platform_secrets] == ["LANGCHAIN_API_KEY"]
    assert [(k, v.value) for k, v in spec.secrets] == [
        ("LANGSMITH_API_KEY", "user-own-key"),
        ("LANGSMITH_PROJECT", "my-project"),
    ]


def test_user_secrets_sorted_and_duplicates_do_not_crash() -> None:
    # A duplicated name must not make sorting compare two SecretValues (TypeError mid-cycle).
    subject = deployment(
        secrets=[
            {"name": "B", "value": "2"},
            {"name": "A", "value": "first"},
            {"name": "A", "value": "second"},
        ]
    )
    spec = _spec(subject)
    assert [k for k, _ in spec.secrets] == ["A", "A", "B"]
    assert [v.value for k, v in spec.secrets if k == "A"] == ["first", "second"], "stable: the last one wins"


def test_secret_references_preserved_and_sorted() -> None:
    subject = deployment(
        secret_references=[
            {"name": "REDIS_PASSWORD", "secret_name": "redis", "secret_key": "password"},
            {"name": "DB_URI", "secret_name": "db", "secret_key": "uri"},
        ]
    )
    assert _spec(subject).secret_references == (
        SecretReference("DB_URI", "db", "uri"),
        SecretReference("REDIS_PASSWORD", "redis", "password"),
    )
    assert _spec(deployment(secret_references=None)).secret_references == ()


@pytest.mark.parametrize(
    ("overrides", "latest"),
    [({"source_revision_config": {"image_uri": None}}, REVISION), ({}, None)],
    ids=["no image", "no revision"],
)
def test_spec_refuses_without_an_image_and_a_revision(overrides: dict[str, Any], latest: str | None) -> None:
    subject = deployment(**overrides, latest_revision_id=latest)
    with pytest.raises(ValueError, match="has no revision with an image"):
        _spec(subject)


def test_secret_values_never_show_in_a_repr() -> None:
    subject = deployment(
        secrets=[{"name": "OPENAI_API_KEY", "value": USER_SECRET}],
        secret_references=[{"name": "DB_URI", "secret_name": "db", "secret_key": "uri"}],
    )
    placement = Placement(subject, "agents")
    spec = _spec(subject)
    for text in (repr(spec), str(spec), repr(placement), repr(subject), repr(PLATFORM), repr(spec.secrets)):
        for value in (USER_SECRET, API_KEY, PASSWORD):
            assert value not in text
    assert "OPENAI_API_KEY" in repr(spec), "names stay visible: that is what a reader debugs with"


# --- resource_spec() ---------------------------------------------------------------------------

FULL_RESOURCE_SPEC: dict[str, Any] = {
    "min_scale": 2,
    "max_scale": 5,
    "cpu": 1.5,
    "cpu_limit": 2.0,
    "memory_mb": 2048,
    "queue_min_scale": 1,
    "redis_memory_mb": 256,
    "db_storage_gi": 20,
    "db_max_connections": 200,
    "orchestrator_cpu": 1.0,  # in the API, not rendered by this listener: dropped
    "labels": {"team": "support", "cost-center": "42"},
    "annotations": {"b": "2", "a": "1"},
    "service_account_name": "agent-sa",
    "image_pull_secrets": [{"name": "regcred"}, {"name": "mirror"}],
    "volumes": [{"name": "cache", "emptyDir": {}}],
    "volume_mounts": [{"name": "cache", "mountPath": "/cache", "readOnly": None}],
    "init_containers": [{"name": "migrate", "image": "busybox", "command": ["true"]}],
    "sidecars": [{"name": "proxy", "image": "envoy:1", "args": ["-c", "/etc/envoy.yaml"], "extraField": 1}],
}


def test_resource_spec_carries_every_field_over() -> None:
    subject = deployment(source_config={"resource_spec": FULL_RESOURCE_SPEC})
    assert resource_spec(subject) == ResourceSpec(
        min_scale=2,
        max_scale=5,
        cpu=1.5,
        cpu_limit=2.0,
        memory_mb=2048,
        queue_min_scale=1,
        redis_memory_mb=256,
        db_storage_gi=20,
        db_max_connections=200,
        labels=(("cost-center", "42"), ("team", "support")),
        annotations=(("a", "1"), ("b", "2")),
        service_account_name="agent-sa",
        image_pull_secrets=("regcred", "mirror"),
        volumes=({"name": "cache", "emptyDir": {}},),
        volume_mounts=({"name": "cache", "mountPath": "/cache"},),
        init_containers=({"name": "migrate", "image": "busybox", "command": ["true"]},),
        sidecars=({"name": "proxy", "image": "envoy:1", "args": ["-c", "/etc/envoy.yaml"], "extraField": 1},),
    )
    assert _spec(subject).resources == resource_spec(subject)


def test_resource_spec_defaults() -> None:
    assert resource_spec(deployment()) == ResourceSpec()
    assert resource_spec(deployment(source_config={"resource_spec": {}})) == ResourceSpec()


# --- records the listener cannot validate ------------------------------------------------------------

UNREADABLE_ID = "66666666-6666-4666-8666-666666666666"


def unreadable(**fields: Any) -> UnreadableDeployment:
    """A list item with a readable id and a sidecar without an image (does not validate)."""
    item: dict[str, Any] = {
        "id": UNREADABLE_ID,
        "source": "external_docker",
        "latest_revision_id": REVISION,
        "secrets": [{"name": "TOKEN", "value": USER_SECRET}],
        "source_config": {"listener_id": str(LISTENER), "resource_spec": {"sidecars": [{"name": "x"}]}},
    }
    for key, value in fields.items():
        if key == "listener_id":
            item["source_config"]["listener_id"] = value
        elif value is ...:
            item.pop(key)
        else:
            item[key] = value
    read = read_item(item)
    assert isinstance(read, UnreadableDeployment)
    return read


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        pytest.param({}, "refused, reported", id="this listener's"),
        pytest.param({"listener_id": str(OTHER_LISTENER)}, "ignored", id="another listener's"),
        pytest.param({"listener_id": None}, "ignored", id="on no listener"),
        pytest.param({"source": "github"}, "ignored", id="another source"),
        pytest.param({"listener_id": 7}, "refused, not reported", id="a listener that cannot be read"),
        pytest.param({"source_config": "?"}, "refused, not reported", id="no readable source_config"),
        pytest.param({"source": 7, "listener_id": 7}, "refused, not reported", id="nothing readable"),
        pytest.param({"latest_revision_id": ...}, "refused, no revision", id="no revision to report"),
    ],
)
def test_an_unreadable_record_is_refused_when_it_may_be_ours(fields: dict[str, Any], outcome: str) -> None:
    item = unreadable(**fields)
    refused, ignored = refuse_unreadable([item], LISTENER)
    if outcome == "ignored":
        assert (refused, ignored) == ([], [item])
        return
    assert ignored == []
    [refusal] = refused
    assert refusal.deployment_id == UNREADABLE_ID
    assert refusal.report_upstream is (outcome == "refused, reported" or outcome == "refused, no revision")
    assert refusal.revision_id == (None if outcome == "refused, no revision" else REVISION)
    expected = "source_config: " if "source_config" in fields else "sidecars.0.image: Field required"
    assert expected in refusal.reason
    assert USER_SECRET not in repr(refusal)
    assert USER_SECRET not in repr(item)
