"""Every Kubernetes object every stack declares is valid for that stack's cluster version.

The objects come from the program's own run under mocks (`up` mode, so the registered listener id and
other computed values are filled in); each is checked against the strict schema of its kind for
`cluster.kubernetes_version` and the semantic rules the schemas miss.
"""

from __future__ import annotations

import copy

import pytest

from components.load import parse_stack_config
from tests.kube_schemas import declared_objects, validation_errors
from tests.support import cached_run
from tools.harness import read_stack_file, stack_names, stack_path


def _version(stack: str) -> str:
    stack_file = read_stack_file(stack_path(stack))
    return parse_stack_config(stack, stack_file.config, stack_file.secret_keys).cluster.kubernetes_version


@pytest.mark.parametrize("stack", stack_names())
def test_every_declared_object_is_valid_for_the_clusters_version(stack: str) -> None:
    version = _version(stack)
    objects = declared_objects(cached_run(stack, False))
    assert {o["kind"] for o in objects} >= {"Namespace", "Role", "RoleBinding", "Deployment", "NetworkPolicy"}
    problems = {
        f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": errors
        for o in objects
        if (errors := validation_errors(o, version))
    }
    assert problems == {}


def _deployment(stack: str) -> dict:
    return next(o for o in declared_objects(cached_run(stack, False)) if o["kind"] == "Deployment")


def test_the_validation_catches_what_the_api_server_refuses() -> None:
    good = _deployment("dev")
    assert validation_errors(good, "1.33") == []

    unknown_field = copy.deepcopy(good)
    unknown_field["spec"]["template"]["spec"]["containers"][0]["imagePullPolicies"] = "Always"
    assert any("imagePullPolicies" in e for e in validation_errors(unknown_field, "1.33"))

    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "1"
    assert validation_errors(wrong_type, "1.33")

    bad_label = copy.deepcopy(good)
    bad_label["metadata"]["labels"]["langsmith-dataplane/listener"] = "not a label value!"
    assert any("bad label value" in e for e in validation_errors(bad_label, "1.33"))

    bad_selector = copy.deepcopy(good)
    bad_selector["spec"]["selector"]["matchLabels"]["extra"] = "x"
    assert any("not in the template's labels" in e for e in validation_errors(bad_selector, "1.33"))


def test_custom_resources_are_checked_strictly_too() -> None:
    gateway = next(o for o in declared_objects(cached_run("prod", False)) if o["kind"] == "Gateway")
    assert validation_errors(gateway, "1.33") == []
    typo = copy.deepcopy(gateway)
    typo["spec"]["listeners"][0]["allowedRoute"] = typo["spec"]["listeners"][0].pop("allowedRoutes")
    assert validation_errors(typo, "1.33")
    no_port = copy.deepcopy(gateway)
    del no_port["spec"]["listeners"][0]["port"]
    assert validation_errors(no_port, "1.33")
