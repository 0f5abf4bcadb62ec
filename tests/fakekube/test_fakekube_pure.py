"""The pure SSA/patch/selector functions, without HTTP."""

from __future__ import annotations

import pytest

from tools.fakekube import ssa
from tools.fakekube.selectors import SelectorError, labels_match, parse_label_selector

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
