"""The whole program, run per stack under mocks, in preview (unknowns) and up modes."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pytest

from tests.conftest import cached_run
from tools.harness import Registration, run_program, stack_names


def provider_type(reference: str) -> str:
    """`urn:pulumi:<stack>::<project>::<parent types>$<type>::<name>::<id>` -> `<type>`; '' for a default."""
    parts = reference.split("::")
    return parts[2].split("$")[-1] if len(parts) >= 4 else ""


def kubernetes_without_explicit_provider(resources: list[Registration]) -> list[str]:
    """Names of `kubernetes:*` resources left on a default provider (or handed a non-Kubernetes one)."""
    return [
        r.name
        for r in resources
        if r.type.startswith("kubernetes:")
        and r.custom
        and (
            provider_type(r.provider) != "pulumi:providers:kubernetes"
            or r.provider.split("::")[3].startswith("default")
        )
    ]


@pytest.mark.parametrize("preview", [True, False], ids=["preview", "up"])
@pytest.mark.parametrize("stack", stack_names())
def test_every_stack_runs(stack, preview):
    result = cached_run(stack, preview)
    assert result.resources, "a stack registers at least its providers"
    assert result.outputs["environment"] in {"dev", "staging", "prod"}
    assert result.outputs["controlPlaneUrl"].startswith("https://")


@pytest.mark.parametrize("stack", stack_names())
def test_every_kubernetes_resource_uses_an_explicit_provider(stack):
    assert kubernetes_without_explicit_provider(cached_run(stack, True).resources) == []


def test_the_provider_check_catches_a_default_provider():
    def program() -> None:
        provider = k8s.Provider("explicit", kubeconfig="{}")
        k8s.core.v1.ConfigMap("good", opts=pulumi.ResourceOptions(provider=provider))
        k8s.core.v1.ConfigMap("bad")

    resources = run_program(program, preview=True).resources
    assert kubernetes_without_explicit_provider(resources) == ["bad"]


@pytest.mark.parametrize("stack", stack_names())
def test_every_aws_resource_uses_the_stacks_aws_provider(stack):
    resources = cached_run(stack, True).resources
    providers = {r.urn for r in resources if r.type == "pulumi:providers:aws"}
    assert len(providers) == 1
    (provider,) = providers
    strays = [
        r.name for r in resources if r.type.startswith("aws:") and not r.provider.startswith(provider + "::")
    ]
    assert strays == []


@pytest.mark.parametrize("stack", stack_names())
def test_no_resource_hangs_off_the_stack_except_providers_and_components(stack):
    """Children are parented to their component, so the plan reads as a tree."""
    resources = cached_run(stack, True).resources
    stack_urn_suffix = f"pulumi:pulumi:Stack::langsmith-dataplane-{stack}"
    orphans = [
        r.name
        for r in resources
        if r.custom and not r.type.startswith("pulumi:providers:") and r.parent.endswith(stack_urn_suffix)
    ]
    assert orphans == []
