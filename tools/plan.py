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
        "",
    ]
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
        detail = _inputs_summary(r)
        child_indent = indent + ("   " if last else "│  ")
        if detail:
            lines.append(f"{child_indent}  {detail}")
        _render_children(children, r.urn, child_indent, lines)


def _inputs_summary(r: Registration) -> str:
    if not r.custom:
        return ""
    inputs = sanitize(dict(r.inputs))
    shown = [
        f"{key}={_inline(value, _MAX_INLINE)}"
        for key, value in inputs.items()
        if key not in _QUIET_INPUT_KEYS and not key.startswith("__") and value not in (None, [], {})
    ]
    more = f" (+{len(shown) - _MAX_SHOWN_INPUTS} more)" if len(shown) > _MAX_SHOWN_INPUTS else ""
    return " ".join(shown[:_MAX_SHOWN_INPUTS]) + more


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
