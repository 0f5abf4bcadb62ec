"""Names are DNS-safe, deterministic and unique per deployment; ownership helpers; spec hash."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listener import naming
from listener.render import flatten, render
from listener.spec import AgentServerSpec, RenderOptions, SecretValue

HOSTILE_NAMES = [
    "Support Agent",
    "ÜNÏCÖDE-agént",
    "日本語のエージェント",
    "x" * 200,
    "UPPER.case.with.dots",
    "123-starts-with-digit",
    "---",
    "",
    "a_b__c  d",
    "emoji 🚀 agent",
]


def _all_names(names: naming.ObjectNames) -> list[str]:
    return [names.api, names.queue, names.postgres, names.redis, names.env_secret, names.postgres_secret]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_become_dns_labels(name: str) -> None:
    names = naming.ObjectNames.of(name, str(uuid.uuid5(uuid.NAMESPACE_DNS, name)))
    for n in _all_names(names):
        assert naming.is_dns_label(n, naming.MAX_OBJECT_NAME), n
    assert naming.is_dns_label(names.base)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Support Agent", "support-agent"),
        ("ÜNÏCÖDE-agént", "unicode-agent"),
        ("UPPER.case.with.dots", "upper-case-with-dots"),
        ("123-abc", "a-123-abc"),
        ("日本語", "agent"),
        ("x" * 200, "x" * naming.MAX_SLUG),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert naming.slugify(name) == slug


def test_names_are_deterministic_and_carry_an_id_hash() -> None:
    a = naming.ObjectNames.of("agent", "id-1")
    assert a == naming.ObjectNames.of("agent", "id-1")
    assert a.base == f"agent-{naming.id_hash('id-1')}"
    assert a.api.endswith("-api")
    assert a.queue.endswith("-queue")


@given(
    st.lists(
        st.tuples(st.text(max_size=80), st.uuids().map(str)), min_size=2, max_size=6, unique_by=lambda t: t[1]
    )
)
def test_names_are_unique_across_deployments(deployments: list[tuple[str, str]]) -> None:
    seen: set[str] = set()
    for name, dep_id in deployments:
        for n in _all_names(naming.ObjectNames.of(name, dep_id))[
            :-1
        ]:  # pg Secret shares the StatefulSet's name
            assert naming.is_dns_label(n, naming.MAX_OBJECT_NAME)
            assert n not in seen
            seen.add(n)


@given(st.text(max_size=300))
def test_label_value_is_always_valid_and_injective_enough(value: str) -> None:
    v = naming.label_value(value)
    assert len(v) <= 63
    assert naming._LABEL_VALUE.match(v)
    if len(value) <= 63 and naming._LABEL_VALUE.match(value):
        assert v == value


def test_label_value_distinguishes_sanitised_collisions() -> None:
    assert naming.label_value("a b") != naming.label_value("a  b")


def test_ownership_selector_and_is_ours() -> None:
    sel = naming.ownership_selector("L1")
    assert sel == {naming.LABEL_MANAGED_BY: naming.MANAGED_BY, naming.LABEL_LISTENER_ID: "L1"}
    assert naming.ownership_selector("L1", "D1")[naming.LABEL_DEPLOYMENT_ID] == "D1"
    assert naming.selector_string(naming.ownership_selector("L1", "D1")) == (
        "app.kubernetes.io/managed-by=langsmith-dataplane-listener,"
        "langsmith-dataplane/deployment-id=D1,langsmith-dataplane/listener-id=L1"
    )
    ours = {"metadata": {"labels": naming.ownership_selector("L1", "D1")}}
    assert naming.is_ours(ours, "L1")
    assert not naming.is_ours(ours, "L2")
    assert not naming.is_ours({"metadata": {"labels": {naming.LABEL_LISTENER_ID: "L1"}}}, "L1")
    assert not naming.is_ours({"metadata": {}}, "L1")


def test_user_labels_never_override_ownership() -> None:
    ours = naming.ownership_labels(
        instance="i", component="c", listener_id="L", deployment_id="D", revision_id="R"
    )
    merged = naming.merge_labels(
        {naming.LABEL_MANAGED_BY: "helm", naming.LABEL_INSTANCE: "x", "team": "t"}, ours
    )
    assert merged[naming.LABEL_MANAGED_BY] == naming.MANAGED_BY
    assert merged[naming.LABEL_INSTANCE] == "i"
    assert merged["team"] == "t"


def test_selector_labels_exclude_revision_and_listener() -> None:
    sel = naming.selector_labels("inst", "api-server", "D")
    assert naming.LABEL_REVISION_ID not in sel
    assert set(sel) == {naming.LABEL_INSTANCE, naming.LABEL_COMPONENT, naming.LABEL_DEPLOYMENT_ID}


def test_spec_hash_is_stable_ignores_itself_and_tracks_content() -> None:
    obj = {"kind": "ConfigMap", "metadata": {"name": "a", "annotations": {"x": "1"}}, "data": {"k": "v"}}
    h = naming.spec_hash(obj)
    assert h == naming.spec_hash(
        {"data": {"k": "v"}, "metadata": {"annotations": {"x": "1"}, "name": "a"}, "kind": "ConfigMap"}
    )
    hashed = naming.with_spec_hash(obj)
    assert hashed["metadata"]["annotations"][naming.ANNOTATION_SPEC_HASH] == h
    assert naming.spec_hash(hashed) == h
    assert naming.with_spec_hash(hashed) == hashed
    assert naming.spec_hash({**obj, "data": {"k": "w"}}) != h
    assert naming.spec_hash({**obj, "metadata": {**obj["metadata"], "annotations": {"x": "2"}}}) != h
    assert obj["metadata"]["annotations"] == {"x": "1"}  # input not mutated


def _spec(**kw: object) -> AgentServerSpec:
    base: dict[str, object] = {
        "deployment_id": "d",
        "deployment_name": "n",
        "revision_id": "r",
        "tenant_id": "t",
        "listener_id": "l",
        "namespace": "ns",
        "image": "i:1",
        "postgres_password": SecretValue("p"),
        "redis_password": SecretValue("r"),
    }
    base.update(kw)
    return AgentServerSpec(**base)  # type: ignore[arg-type]


def test_spec_hash_annotation_changes_with_rendered_content() -> None:
    a = {o["metadata"]["name"] + o["kind"]: o for o in flatten(render(_spec(), RenderOptions()))}
    b = {o["metadata"]["name"] + o["kind"]: o for o in flatten(render(_spec(image="i:2"), RenderOptions()))}
    changed = {k for k in a if a[k]["metadata"]["annotations"] != b[k]["metadata"]["annotations"]}
    assert changed == {k for k in a if k.endswith(("-apiDeployment", "-queueDeployment"))}


@given(st.text(min_size=1, max_size=40))
def test_secret_value_repr_hides_value(secret: str) -> None:
    sv = SecretValue(secret)
    spec = _spec(secrets=(("K", sv),), postgres_password=sv)
    assert repr(sv) == str(sv) == "SecretValue(****)"
    # The mask and the secret's *name* are visible text; a value equal to part of them is not a leak.
    visible = repr(_spec(secrets=(("K", SecretValue("-")),), postgres_password=None)) + repr(sv)
    if secret not in visible:  # the value may coincide with visible text
        assert secret not in repr(spec)
