"""Run the CrossGuard policies over a mock-recorded plan, without the Pulumi engine.

The very `POLICIES` objects the real pack loads are called with the argument objects the
analyzer would build: props deserialized as the engine does (secrets unwrapped, unknowns as the
engine's sentinel strings behind `unknown_checking_proxy`), providers as `PolicyProviderResource`,
and, for stack policies, parents and dependencies linked between `PolicyResource`s.
It cannot see provider defaults or outputs computed by AWS (see the README's plan section).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ResourceValidationPolicy,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY
from pulumi_policy.policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from policy.policies import PACK_ENFORCEMENT, POLICIES
from tools.harness import Registration


@dataclass(frozen=True)
class PolicyViolation:
    policy: str
    enforcement: str
    """"mandatory" or "advisory" ("advisory" also for a policy that could not run on unknowns)."""
    urn: str
    message: str


def evaluate(
    resources: Sequence[Registration],
    policies: Sequence[ResourceValidationPolicy | StackValidationPolicy] = POLICIES,
) -> list[PolicyViolation]:
    """Every violation of `policies` in a recorded plan, sorted by policy, URN and message."""
    by_urn = {r.urn: r for r in resources}
    violations: list[PolicyViolation] = []
    for policy in policies:
        level = _enforcement(policy)
        if level == EnforcementLevel.DISABLED:
            continue
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                if not r.custom:
                    continue
                args = ResourceValidationArgs(
                    r.type, _engine_props(r.inputs), r.urn, r.name, _options(r), _provider(r, by_urn)
                )
                _run(policy, level, args, r.urn, violations)
        else:
            _run(policy, level, StackValidationArgs(_stack_resources(resources, by_urn)), "", violations)
    return sorted(violations, key=lambda v: (v.policy, v.urn, v.message))


def _run(
    policy: ResourceValidationPolicy | StackValidationPolicy,
    level: EnforcementLevel,
    args: ResourceValidationArgs | StackValidationArgs,
    default_urn: str,
    out: list[PolicyViolation],
) -> None:
    def report(message: str, urn: str | None = None) -> None:
        out.append(PolicyViolation(policy.name, level.value, urn or default_urn, message))

    try:
        policy.validate(args, report)  # type: ignore[arg-type]
    except UnknownValueError as error:
        # What the engine does too: a diagnostic, not a failure, when preview can't know a value.
        out.append(
            PolicyViolation(
                policy.name,
                EnforcementLevel.ADVISORY.value,
                default_urn,
                f"can't run during preview: {error.message}",
            )
        )


def _enforcement(policy: ResourceValidationPolicy | StackValidationPolicy) -> EnforcementLevel:
    level = policy.enforcement_level or PACK_ENFORCEMENT
    # REMEDIATE has nothing to remediate offline; the engine reports such failures as mandatory.
    return EnforcementLevel.MANDATORY if level == EnforcementLevel.REMEDIATE else level


def _engine_form(value: Any) -> Any:
    if isinstance(value, Mapping):
        if value.get(SPECIAL_SIG_KEY) == SPECIAL_SECRET_SIG:
            return _engine_form(value.get("value"))
        return {str(k): _engine_form(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_engine_form(v) for v in value]
    if type(value).__name__ == "Unknown":
        return UNKNOWN_STRING_VALUE
    return value


def _engine_props(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    return unknown_checking_proxy(_engine_form(dict(inputs)))


def _options(r: Registration) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], r.parent or None)


def _provider(r: Registration, by_urn: Mapping[str, Registration]) -> PolicyProviderResource | None:
    # A provider reference is "<urn>::<id>"; an empty one means the default provider, which the
    # engine would report under the name "default".
    if not r.provider:
        return None
    urn = r.provider.rsplit("::", 1)[0]
    registered = by_urn.get(urn)
    if registered is not None:
        return PolicyProviderResource(registered.type, _engine_props(registered.inputs), urn, registered.name)
    parts = urn.split("::")
    return PolicyProviderResource(parts[-2].split("$")[-1] if len(parts) >= 2 else "", {}, urn, parts[-1])


def _stack_resources(
    resources: Sequence[Registration], by_urn: Mapping[str, Registration]
) -> list[PolicyResource]:
    views = {
        r.urn: PolicyResource(
            r.type, _engine_props(r.inputs), r.urn, r.name, _options(r), _provider(r, by_urn), None, [], {}
        )
        for r in resources
    }
    for r in resources:
        view = views[r.urn]
        view.parent = views.get(r.parent)
        view.dependencies = [views[d] for d in r.dependencies if d in views]
    return list(views.values())
