"""The pure SSA/patch/selector functions, without HTTP."""

from __future__ import annotations

import pytest

from tools.fakekube import auth, images, quantity, ssa
from tools.fakekube.selectors import SelectorError, labels_match, parse_field_selector, parse_label_selector

POD_SPEC = {"spec": {"containers": [{"name": "app", "image": "a:1", "ports": [{"containerPort": 80}]}]}}


def test_flatten_keys_containers_by_name_and_ports_by_port_and_protocol() -> None:
    flat = ssa.flatten(POD_SPEC)
    item = ("f:spec", "f:containers", 'k:{"name":"app"}')
    assert flat[item] == ssa.ITEM
    assert flat[(*item, "f:image")] == "a:1"
    assert (*item, "f:ports", 'k:{"containerPort":80,"protocol":"TCP"}', "f:containerPort") in flat


def test_fields_v1_renders_like_the_api_server() -> None:
    rendered = ssa.fields_v1(ssa.flatten({"metadata": {"labels": {"a": "1"}}, **POD_SPEC}))
    container = rendered["f:spec"]["f:containers"]['k:{"name":"app"}']
    assert container["."] == {}
    assert container["f:image"] == {}
    assert rendered["f:metadata"]["f:labels"] == {"f:a": {}}


def test_merge_merges_keyed_lists_and_replaces_atomic_ones() -> None:
    base = {
        "spec": {
            "containers": [{"name": "app", "image": "a:1", "args": ["x"]}, {"name": "side", "image": "s"}]
        }
    }
    applied = {"spec": {"containers": [{"name": "app", "image": "a:2", "args": ["y", "z"]}]}}
    merged = ssa.merge(base, applied)
    assert merged["spec"]["containers"] == [
        {"name": "app", "image": "a:2", "args": ["y", "z"]},
        {"name": "side", "image": "s"},
    ]


def test_conflicts_only_where_another_owner_has_a_different_value() -> None:
    current = ssa.flatten({"spec": {"replicas": 2, "paused": False}})
    applied = ssa.flatten({"spec": {"replicas": 3, "paused": False}})
    others = {"hpa": [("f:spec", "f:replicas")], "kubectl": [("f:spec", "f:paused")]}
    assert ssa.find_conflicts(current, applied, others) == [("hpa", ("f:spec", "f:replicas"))]


def test_prunable_skips_fields_someone_else_still_owns() -> None:
    labels = ("f:metadata", "f:labels")
    previous = [(*labels, "f:a"), (*labels, "f:b")]
    assert ssa.prunable(previous, [], others=[(*labels, "f:b")]) == [(*labels, "f:a")]


def test_remove_path_drops_keyed_item_and_emptied_maps() -> None:
    obj = {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "x"}, {"name": "y"}]}}
    ssa.remove_path(obj, ("f:spec", "f:containers", 'k:{"name":"x"}'))
    ssa.remove_path(obj, ("f:metadata", "f:labels", "f:a"))
    assert obj == {"spec": {"containers": [{"name": "y"}]}}


def test_path_to_string_matches_api_server_conflict_notation() -> None:
    path = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}', "f:image")
    assert ssa.path_to_string(path) == '.spec.template.spec.containers[name="app"].image'


def test_strategic_merge_patch_merges_containers_and_deletes_items() -> None:
    target = {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}
    patch = {"containers": [{"name": "a", "image": "9"}, {"name": "b", "$patch": "delete"}]}
    assert ssa.strategic_merge_patch(target, patch) == {"containers": [{"name": "a", "image": "9"}]}
    # A JSON merge patch replaces the list wholesale instead.
    assert ssa.json_merge_patch(target, {"containers": [{"name": "a"}]}) == {"containers": [{"name": "a"}]}


def test_json_patch_operations_and_failed_test() -> None:
    doc = {"metadata": {"labels": {"a/b": "1"}}, "list": [1, 2]}
    out = ssa.json_patch(
        doc,
        [
            {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "remove", "path": "/list/0"},
        ],
    )
    assert out == {"metadata": {"labels": {"a/b": "2"}}, "list": [2, 3]}
    with pytest.raises(ssa.JsonPatchError):
        ssa.json_patch(doc, [{"op": "test", "path": "/list/0", "value": 9}])


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("tier in (a, b),app", {"tier": "b", "app": "x"}, True),
        ("tier notin (a,b)", {"tier": "a"}, False),
        ("tier notin (a,b)", {}, True),
        ("!legacy", {"legacy": "1"}, False),
        ("example.com/owner", {"example.com/owner": ""}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert labels_match(parse_label_selector(selector), labels) is expected


def test_label_selector_syntax_errors_are_reported() -> None:
    with pytest.raises(SelectorError):
        parse_label_selector("a in (b")


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        # staging/src/k8s.io/apimachinery/pkg/labels/selector_test.go (TestSelectorMatches, TestLexer):
        # whitespace around operators, "in" with empty values, Gt/Lt on integer labels.
        ("app = web", {"app": "web"}, True),
        ("x in (,a)", {"x": ""}, True),
        ("replicas>1", {"replicas": "2"}, True),
        ("replicas<1", {"replicas": "2"}, False),
        ("replicas>1", {"replicas": "two"}, False),
        ("app=", {"app": ""}, True),
        ("in=x", {"in": "x"}, True),
    ],
)
def test_label_selectors_valid_in_labels_parse(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert labels_match(parse_label_selector(selector), labels) is expected


@pytest.mark.parametrize(
    "selector",
    [
        # labels.Parse (staging/src/k8s.io/apimachinery/pkg/labels/selector.go): NewRequirement validates
        # the key (validation.IsQualifiedName) and each value (IsValidLabelValue), "in"/"notin" need a
        # value, the parser wants an identifier after every ',' and ',' or ')' between set values, and
        # Gt/Lt need an integer (selector_test.go TestToString/TestRequirementConstructor cases).
        "a/b/c=x",
        "app=-x",
        "app=x_",
        "k" * 64 + "=x",
        "app=" + "v" * 64,
        "Example.com/app=x",
        "example..com/app",
        "app in ()",
        "app notin ()",
        "app=a,",
        "app=x,,b=y",
        "app in (a b)",
        "app in (a,-b)",
        "!app=x",
        "app>x",
        ",app",
    ],
)
def test_label_selectors_the_api_server_refuses(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


def test_field_selectors_parse_like_fields_parse_selector() -> None:
    """staging/src/k8s.io/apimachinery/pkg/fields/selector.go: terms split on unescaped ',', the
    first of '!=', '==', '=' splits a term, nothing is trimmed, and a value may contain ',' or '='
    only escaped with a backslash (UnescapeValue); an empty term is not understood."""
    supported = ("metadata.name", "metadata.namespace")
    (req,) = parse_field_selector(r"metadata.name=a\,b\=c", supported)
    assert (req.path, req.equal, req.value) == ("metadata.name", True, "a,b=c")
    assert parse_field_selector("metadata.name!=x", supported)[0].equal is False
    for bad in (
        "metadata.name=a=b",
        "metadata.name=x,",
        r"metadata.name=a\x",
        "metadata.name",
        "metadata.name =x",
    ):
        with pytest.raises(SelectorError):
            parse_field_selector(bad, supported)


# ---------------------------------------------------------------- resource.Quantity
# Canonical forms from k8s.io/apimachinery/pkg/api/resource/quantity_test.go (TestQuantityParse,
# TestQuantityString): the suffix's format is kept, no precision is lost, the largest suffix wins.


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0", "0"),
        ("0.5", "500m"),
        (".5", "500m"),
        ("1000m", "1"),
        ("1001m", "1001m"),
        ("1.5", "1500m"),
        ("1.5Gi", "1536Mi"),
        ("1024Ki", "1Mi"),
        ("1024", "1024"),
        ("1000", "1k"),
        ("1e3", "1e3"),
        ("1E3", "1e3"),
        ("12e6", "12e6"),
        ("0.1n", "1n"),  # rounded up to the nano scale
        ("0.001Ki", "1024m"),  # a fractional binary value is written in decimal
        ("-1", "-1"),
        (2, "2"),
        (0.25, "250m"),
    ],
)
def test_quantities_are_stored_in_canonical_form(text: object, canonical: str) -> None:
    assert quantity.canonicalize(text) == canonical


@pytest.mark.parametrize("text", ["", "1 Gi", "1GB", "abc", "1.2.3", True, None])
def test_malformed_quantities_are_refused(text: object) -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.parse(text)


def test_quantities_compare_by_value_not_spelling() -> None:
    assert quantity.parse("1").value == quantity.parse("1000m").value
    assert quantity.parse("1Ki").value == quantity.parse("1024").value
    assert quantity.parse("2") > quantity.parse("1500m")
    assert quantity.milli_value(quantity.parse("0.1n")) == 1  # MilliValue rounds up


# ---------------------------------------------------------------- image references
# github.com/distribution/reference normalize.go (ParseNormalizedNamed) as the kubelet uses it;
# pkg/apis/core/v1/defaults.go SetDefaults_Container for the pull policy.


@pytest.mark.parametrize(
    ("image", "error"),
    [
        ("nginx", None),
        ("registry.example.com:5000/team/app:1.2@sha256:" + "a" * 64, None),
        ("localhost:5000/x:y", None),
        ("img:1 ", "invalid reference format"),
        (" img:1", "invalid reference format"),
        ("Nginx", "invalid reference format: repository name (library/Nginx) must be lowercase"),
        ("ghcr.io/Foo/bar:1", "invalid reference format: repository name (Foo/bar) must be lowercase"),
        ("a" * 64, f"invalid repository name ({'a' * 64}), cannot specify 64-byte hexadecimal strings"),
        ("nginx@sha256:" + "a" * 40, "invalid checksum digest length"),
        ("nginx:" + "t" * 129, "invalid reference format"),
    ],
)
def test_image_references_parse_like_the_kubelet(image: str, error: str | None) -> None:
    if error is None:
        images.parse(image)
        assert images.kubelet_error(image) is None
    else:
        with pytest.raises(images.InvalidImage) as e:
            images.parse(image)
        assert str(e.value) == error
        assert images.kubelet_error(image) == (
            f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": {error}'
        )


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("not valid", "IfNotPresent"),  # the parse error is ignored; validation is elsewhere
    ],
)
def test_image_pull_policy_default(image: str, policy: str) -> None:
    assert images.default_pull_policy(image) == policy


# ---------------------------------------------------------------- RBAC request attributes and coverage
# k8s.io/apiserver/pkg/endpoints/request/requestinfo.go (NewRequestInfo);
# pkg/registry/rbac/validation/policy_comparator.go (Covers).

_USER = auth.UserInfo("alice", ())


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/a/pods", {}, ("list", "", "pods", "", "a", "")),
        ("GET", "/api/v1/namespaces/a/pods", {"watch": "true"}, ("watch", "", "pods", "", "a", "")),
        ("GET", "/api/v1/namespaces/a/pods/p/log", {}, ("get", "", "pods", "log", "a", "p")),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/d/scale",
            {},
            ("patch", "apps", "deployments", "scale", "a", "d"),
        ),
        ("DELETE", "/api/v1/namespaces/a/secrets", {}, ("deletecollection", "", "secrets", "", "a", "")),
        ("GET", "/api/v1/namespaces/a", {}, ("get", "", "namespaces", "", "a", "a")),
        ("PUT", "/api/v1/namespaces/a/finalize", {}, ("update", "", "namespaces", "finalize", "a", "a")),
        (
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            {},
            ("create", "rbac.authorization.k8s.io", "clusterroles", "", "", ""),
        ),
    ],
)
def test_request_attributes(method: str, path: str, query: dict[str, str], expected: tuple[str, ...]) -> None:
    a = auth.request_attributes(method, path, query, _USER)
    assert a.resource_request
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == expected


def test_non_resource_requests() -> None:
    a = auth.request_attributes("GET", "/version", {}, _USER)
    assert not a.resource_request
    assert (a.verb, a.path) == ("get", "/version")


def test_rule_matching_wildcards_subresources_and_resource_names() -> None:
    pods_log = auth.request_attributes("GET", "/api/v1/namespaces/a/pods/p/log", {}, _USER)
    assert auth.rule_allows(pods_log, {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]})
    assert not auth.rule_allows(pods_log, {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]})
    assert auth.rule_allows(pods_log, {"apiGroups": [""], "resources": ["*/log"], "verbs": ["get"]})
    assert auth.rule_allows(pods_log, {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})
    assert auth.rule_allows(
        pods_log, {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"], "resourceNames": ["p"]}
    )
    assert not auth.rule_allows(
        pods_log, {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"], "resourceNames": ["q"]}
    )
    listing = auth.request_attributes("GET", "/api/v1/namespaces/a/pods", {}, _USER)
    # resourceNames never match a list (there is no name).
    assert not auth.rule_allows(
        listing, {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"], "resourceNames": ["p"]}
    )


def test_escalation_coverage() -> None:
    owner = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]
    assert auth.covers(owner, [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]) == []
    missing = auth.covers(
        owner, [{"apiGroups": [""], "resources": ["secrets", "pods"], "verbs": ["get", "delete"]}]
    )
    assert auth.describe_missing(missing) == "\n".join(
        sorted(
            [
                '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}',
                '{APIGroups:[""], Resources:["pods"], Verbs:["get"]}',
                '{APIGroups:[""], Resources:["secrets"], Verbs:["delete"]}',
            ]
        )
    )
    assert auth.covers([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], owner) == []


def test_a_list_by_name_carries_the_name() -> None:
    # requestinfo.go: list/watch with fieldSelector metadata.name=x is authorised with name x.
    a = auth.request_attributes(
        "GET", "/api/v1/namespaces/a/configmaps", {"fieldSelector": "metadata.name=cfg", "watch": "1"}, _USER
    )
    assert (a.verb, a.name, a.authz_name) == ("watch", "", "cfg")
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["watch"], "resourceNames": ["cfg"]}
    assert auth.rule_allows(a, rule)
    other = auth.request_attributes(
        "GET", "/api/v1/namespaces/a/configmaps", {"fieldSelector": "metadata.name!=cfg"}, _USER
    )
    assert other.authz_name == ""
