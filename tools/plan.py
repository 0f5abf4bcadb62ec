"""The offline plan: what a stack would register, checked against the policy pack, without cloud access.

    python -m tools.plan dev            # readable tree, counts, policy results, outputs
    python -m tools.plan dev --json     # deterministic JSON (same input -> same bytes)
    python -m tools.plan --all          # every stack in stacks/; non-zero if any fails

It runs the real `__main__.py` under Pulumi's mocks in preview mode. It is a *plan* of desired
state, not a preview: it cannot diff against deployed state or tell an update from a replace.
Exit codes: 0 clean, 1 policy violations, 2 a stack that cannot be planned (config errors).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from tools.harness import (
    PlanResult,
    Registration,
    StackFileError,
    run_stack,
    sanitize,
    stack_names,
    stack_path,
)

EXIT_OK, EXIT_POLICY, EXIT_ERROR = 0, 1, 2
_MAX_INLINE = 60
_MAX_SHOWN_INPUTS = 6
_QUIET_INPUT_KEYS = {"tags", "tagsAll", "name", "metadata"}


@dataclass
class StackPlan:
    stack: str
    result: PlanResult | None = None
    error: str | None = None
    violations: list[dict[str, str]] = field(default_factory=list)
    policies_checked: bool = False

    @property
    def exit_code(self) -> int:
        if self.error:
            return EXIT_ERROR
        return EXIT_POLICY if any(v["enforcement"] == "mandatory" for v in self.violations) else EXIT_OK


def plan(stack: str) -> StackPlan:
    path = stack_path(stack)
    if not path.exists():
        known = ", ".join(stack_names())
        return StackPlan(stack, error=f"no stack file {path.name} in stacks/ (stacks: {known})")
    try:
        result = run_stack(stack, preview=True)
    except StackFileError as error:
        return StackPlan(stack, error=str(error))
    except pulumi.RunError as error:
        return StackPlan(stack, error=str(error))
    violations, checked = _policy_results(result.resources)
    return StackPlan(stack, result=result, violations=violations, policies_checked=checked)


def _policy_results(resources: Sequence[Registration]) -> tuple[list[dict[str, str]], bool]:
    if importlib.util.find_spec("policy") is None or importlib.util.find_spec("policy.offline") is None:
        return [], False
    from policy.offline import evaluate

    found = [
        {"policy": v.policy, "enforcement": str(v.enforcement), "urn": v.urn or "", "message": v.message}
        for v in evaluate(resources)
    ]
    return sorted(found, key=lambda v: (v["policy"], v["urn"], v["message"])), True


# --- JSON -------------------------------------------------------------------------------------


def to_document(stack_plan: StackPlan) -> dict[str, Any]:
    result = stack_plan.result
    assert result is not None
    return {
        "stack": stack_plan.stack,
        "kind": "offline desired-state plan (Pulumi mocks, preview mode)",
        "resources": [_resource_document(r) for r in result.resources],
        "counts": dict(sorted(Counter(r.type for r in result.resources).items())),
        "policies": {"checked": stack_plan.policies_checked, "violations": stack_plan.violations},
        "outputs": result.outputs,
    }


def _resource_document(r: Registration) -> dict[str, Any]:
    return {
        "urn": r.urn,
        "type": r.type,
        "name": r.name,
        "parent": r.parent,
        "provider": _urn_of_provider(r.provider),
        "custom": r.custom,
        "dependencies": list(r.dependencies),
        "inputs": sanitize(dict(r.inputs)),
        # Only when set, so the many resources without them stay short.
        **({"protect": True} if r.protect else {}),
        **({"retainOnDelete": True} if r.retain_on_delete else {}),
        **({"ignoreChanges": list(r.ignore_changes)} if r.ignore_changes else {}),
    }


def _urn_of_provider(reference: str) -> str:
    # A provider reference is "<urn>::<id>"; the id is unknown in preview, the URN is stable.
    return reference.rsplit("::", 1)[0] if reference else ""


# --- Diff -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanDiff:
    """How a second desired state differs from a first, resource by resource (by URN).

    A URN is what the engine matches old and new state by: a resource whose URN is in both plans is
    an update candidate, one that only one plan has is a create or a delete. (Whether an update would
    in fact replace is the provider's call, which only a real preview makes.)
    """

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: dict[str, tuple[str, ...]]
    """URN -> the input keys whose values differ."""


def diff_plans(before: PlanResult, after: PlanResult) -> PlanDiff:
    old = {r.urn: sanitize(dict(r.inputs)) for r in before.resources}
    new = {r.urn: sanitize(dict(r.inputs)) for r in after.resources}
    changed = {
        urn: tuple(sorted(k for k in old[urn].keys() | new[urn].keys() if old[urn].get(k) != new[urn].get(k)))
        for urn in sorted(old.keys() & new.keys())
    }
    return PlanDiff(
        added=tuple(sorted(new.keys() - old.keys())),
        removed=tuple(sorted(old.keys() - new.keys())),
        changed={urn: keys for urn, keys in changed.items() if keys},
    )


# --- Text -------------------------------------------------------------------------------------


def render_text(stack_plan: StackPlan) -> str:
    result = stack_plan.result
    assert result is not None
    lines = [
        f"Offline plan for stack '{stack_plan.stack}': desired state under Pulumi mocks, not a diff "
        "against deployed state.",
    ]
    if result.stubbed_secrets:
        lines.append(
            f"Secrets not in the stack file, planned as <secret>: {', '.join(result.stubbed_secrets)} "
            "(set them with `pulumi config set --secret`)."
        )
    lines.append("")
    children: dict[str, list[Registration]] = {}
    urns = {r.urn for r in result.resources}
    for r in result.resources:
        parent = r.parent if r.parent in urns else ""
        children.setdefault(parent, []).append(r)
    lines.append(f"pulumi:pulumi:Stack langsmith-dataplane-{stack_plan.stack}")
    _render_children(children, "", "", lines)

    lines += ["", f"Resources: {len(result.resources)}"]
    for typ, count in sorted(Counter(r.type for r in result.resources).items()):
        lines.append(f"  {count:4d}  {typ}")

    if result.warnings:
        lines += ["", f"Warnings: {len(result.warnings)}"]
        lines += [f"  {w}" for w in result.warnings]

    lines.append("")
    if not stack_plan.policies_checked:
        lines.append("Policies: no policy pack found (policy/offline.py)")
    elif not stack_plan.violations:
        lines.append("Policies: all passed")
    else:
        mandatory = sum(v["enforcement"] == "mandatory" for v in stack_plan.violations)
        lines.append(
            f"Policies: {mandatory} mandatory, {len(stack_plan.violations) - mandatory} advisory violation(s)"
        )
        for v in stack_plan.violations:
            lines.append(f"  [{v['enforcement']}] {v['policy']}: {v['message']} ({_short_urn(v['urn'])})")

    lines += ["", "Outputs:"]
    for name, value in result.outputs.items():
        lines.append(f"  {name}: {_inline(value, 200)}")
    return "\n".join(lines)


def _render_children(
    children: dict[str, list[Registration]], parent: str, indent: str, lines: list[str]
) -> None:
    kids = children.get(parent, [])
    for i, r in enumerate(kids):
        last = i == len(kids) - 1
        provider = _urn_of_provider(r.provider)
        via = f"  [provider {_short_urn(provider)}]" if provider else ""
        via += "  [protect]" if r.protect else ""
        lines.append(f"{indent}{'└─' if last else '├─'} {r.type} {r.name}{via}")
        child_indent = indent + ("   " if last else "│  ")
        for detail in _details(r):
            lines.append(f"{child_indent}  {detail}")
        _render_children(children, r.urn, child_indent, lines)


def _details(r: Registration) -> list[str]:
    if not r.custom:
        return []
    inputs = sanitize(dict(r.inputs))
    special = _SPECIAL_DETAILS.get(r.type)
    if special is not None:
        return special(inputs)
    if r.type.startswith("kubernetes:") and isinstance(inputs.get("metadata"), dict):
        return _kubernetes_details(inputs)
    return [_inputs_summary(inputs)] if _inputs_summary(inputs) else []


def _inputs_summary(inputs: dict[str, Any], skip: frozenset[str] = frozenset()) -> str:
    shown = [
        f"{key}={_inline(value, _MAX_INLINE)}"
        for key, value in inputs.items()
        if key not in _QUIET_INPUT_KEYS
        and key not in skip
        and not key.startswith("__")
        and value not in (None, [], {})
    ]
    more = f" (+{len(shown) - _MAX_SHOWN_INPUTS} more)" if len(shown) > _MAX_SHOWN_INPUTS else ""
    return " ".join(shown[:_MAX_SHOWN_INPUTS]) + more


# What a reviewer of the in-cluster layer must see in full: who may do what (Role rules), which
# add-on versions and values, which image, which listener registration.


def _object_name(inputs: dict[str, Any]) -> str:
    meta = inputs.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{where}{meta.get('name', '<auto>')}"


def _kubernetes_details(inputs: dict[str, Any]) -> list[str]:
    rest = _inputs_summary(inputs, frozenset({"apiVersion", "kind"}))
    return [f"{_object_name(inputs)}  {rest}".rstrip()]


def _role_details(inputs: dict[str, Any]) -> list[str]:
    lines = [_object_name(inputs)]
    for rule in inputs.get("rules") or []:
        groups = ",".join(g or "core" for g in rule.get("apiGroups") or [])
        lines.append(
            f"  {groups}: {','.join(rule.get('resources') or [])} [{','.join(rule.get('verbs') or [])}]"
        )
    return lines


def _binding_details(inputs: dict[str, Any]) -> list[str]:
    ref = inputs.get("roleRef") or {}
    subjects = ", ".join(
        f"{s.get('kind')} {s.get('namespace', '')}/{s.get('name')}" for s in inputs.get("subjects") or []
    )
    return [f"{_object_name(inputs)}  {ref.get('kind')} {ref.get('name')} -> {subjects}"]


def _release_details(inputs: dict[str, Any]) -> list[str]:
    repo = (inputs.get("repositoryOpts") or {}).get("repo", "")
    source = f"{repo} " if repo else ""
    return [
        f"{inputs.get('namespace')}/{inputs.get('name')}  chart={source}{inputs.get('chart')} version={inputs.get('version')}",
        f"values={_inline(inputs.get('values') or {}, 300)}",
    ]


def _deployment_details(inputs: dict[str, Any]) -> list[str]:
    spec = inputs.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    images = ",".join(c.get("image", "") for c in pod.get("containers") or [])
    strategy = (spec.get("strategy") or {}).get("type", "")
    return [
        f"{_object_name(inputs)}  replicas={spec.get('replicas')} strategy={strategy} "
        f"serviceAccount={pod.get('serviceAccountName')} image={images}"
    ]


def _namespace_details(inputs: dict[str, Any]) -> list[str]:
    labels = (inputs.get("metadata") or {}).get("labels") or {}
    parts = [_object_name(inputs)]
    enforce = labels.get("pod-security.kubernetes.io/enforce")
    if enforce:
        parts.append(f"pod-security={enforce} ({labels.get('pod-security.kubernetes.io/enforce-version')})")
    if labels.get("langsmith-dataplane/namespace-role"):
        parts.append(f"role={labels['langsmith-dataplane/namespace-role']}")
    watchers = sorted(k.split("/", 1)[1] for k in labels if k.startswith("listeners.langsmith-dataplane/"))
    if watchers:
        parts.append(f"watched-by={','.join(watchers)}")
    return ["  ".join(parts)]


def _selector(selector: dict[str, Any]) -> str:
    terms = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    terms += [
        f"{e.get('key')} {e.get('operator')} ({','.join(e.get('values') or [])})"
        for e in selector.get("matchExpressions") or []
    ]
    return ",".join(terms) or "all"


def _peer(peer: dict[str, Any]) -> str:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        excluded = f" except {','.join(block['except'])}" if block.get("except") else ""
        return f"cidr {block.get('cidr')}{excluded}"
    parts = []
    if "namespaceSelector" in peer:
        parts.append(f"ns[{_selector(peer['namespaceSelector'])}]")
    if "podSelector" in peer:
        parts.append(f"pods[{_selector(peer['podSelector'])}]")
    return " ".join(parts)


def _network_policy_details(inputs: dict[str, Any]) -> list[str]:
    spec = inputs.get("spec") or {}
    lines = [
        f"{_object_name(inputs)}  pods[{_selector(spec.get('podSelector') or {})}] {'+'.join(spec.get('policyTypes') or [])}"
    ]
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for rule in spec.get(direction) or []:
            ports = (
                ",".join(f"{p.get('protocol', 'TCP')}/{p.get('port')}" for p in rule.get("ports") or [])
                or "any"
            )
            peers = "; ".join(_peer(p) for p in rule.get(peers_key) or []) or "anywhere"
            lines.append(f"  {direction} {ports} {'from' if direction == 'ingress' else 'to'} {peers}")
    if not spec.get("ingress") and not spec.get("egress"):
        lines.append("  allows nothing")
    return lines


def _registration_details(inputs: dict[str, Any]) -> list[str]:
    adopt = f" adopt={inputs['adopt_listener_id']}" if inputs.get("adopt_listener_id") else ""
    return [
        f"compute_id={inputs.get('compute_id')} namespaces={','.join(inputs.get('namespaces') or [])} "
        f"workspace={inputs.get('workspace_id')} api_key={inputs.get('api_key')} ({inputs.get('api_key_source')})"
        f"{adopt} -> {inputs.get('control_plane_url')}"
    ]


def _guard_details(inputs: dict[str, Any]) -> list[str]:
    return [
        f"a delete is refused while LangSmith deployments use listener {inputs.get('listener_id')} "
        f"(compute_id={inputs.get('compute_id')}); deleted before anything it depends on"
    ]


_SPECIAL_DETAILS = {
    "kubernetes:rbac.authorization.k8s.io/v1:Role": _role_details,
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole": _role_details,
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": _binding_details,
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding": _binding_details,
    "kubernetes:helm.sh/v3:Release": _release_details,
    "kubernetes:apps/v1:Deployment": _deployment_details,
    "kubernetes:core/v1:Namespace": _namespace_details,
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": _network_policy_details,
    "pulumi-python:dynamic/langsmith:ListenerRegistration": _registration_details,
    "pulumi-python:dynamic/langsmith:ListenerInUseGuard": _guard_details,
}


def _inline(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_urn(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else "stack"


# --- CLI --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", nargs="?", help="stack name (stacks/Pulumi.<stack>.yaml)")
    parser.add_argument("--all", action="store_true", help="plan every stack; exit non-zero if any fails")
    parser.add_argument("--json", action="store_true", help="print the deterministic JSON document")
    parser.add_argument("--quiet", action="store_true", help="with --all: one line per stack")
    args = parser.parse_args(argv)
    if bool(args.stack) == bool(args.all):
        parser.error("give exactly one of STACK or --all")

    if args.stack:
        stack_plan = plan(args.stack)
        if stack_plan.error:
            print(stack_plan.error, file=sys.stderr)
        elif args.json:
            # Warnings can depend on the date (EKS support windows), so they stay out of the document.
            for warning in stack_plan.result.warnings if stack_plan.result else ():
                print(f"warning: {warning}", file=sys.stderr)
            print(json.dumps(to_document(stack_plan), indent=2, sort_keys=True))
        else:
            print(render_text(stack_plan))
        return stack_plan.exit_code

    worst = EXIT_OK
    documents = {}
    for stack in stack_names():
        stack_plan = plan(stack)
        worst = max(worst, stack_plan.exit_code)
        if stack_plan.error:
            print(f"FAIL  {stack}\n{stack_plan.error}", file=sys.stderr)
            continue
        assert stack_plan.result is not None
        status = "ok  " if stack_plan.exit_code == EXIT_OK else "FAIL"
        mandatory = sum(v["enforcement"] == "mandatory" for v in stack_plan.violations)
        summary = (
            f"{len(stack_plan.result.resources)} resources, {mandatory} mandatory and "
            f"{len(stack_plan.violations) - mandatory} advisory policy violation(s), "
            f"{len(stack_plan.result.warnings)} warning(s)"
        )
        if args.json:
            documents[stack] = to_document(stack_plan)
        elif args.quiet:
            print(f"{status}  {stack}: {summary}")
        else:
            print(render_text(stack_plan), end="\n\n")
            print(f"{status}  {stack}: {summary}", end="\n\n")
    if args.json:
        print(json.dumps(documents, indent=2, sort_keys=True))
    return worst


if __name__ == "__main__":
    sys.exit(main())
