"""Helpers shared by the component tests: run a stack (or a variant of one) and pick registrations."""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.config import PROJECT
from tools.harness import PlanResult, Registration, run_stack, stack_path

SECRET_SIG = "4dabf18193072939515e22adb298388d"


@functools.cache
def cached_run(stack: str, preview: bool) -> PlanResult:
    """A shipped stack's run; the program is deterministic, so each (stack, mode) runs once per session.
    Callers must not mutate the result."""
    return run_stack(stack, preview=preview)


def stack_document(stack: str) -> dict[str, Any]:
    return yaml.safe_load(stack_path(stack).read_text())


def run_variant(
    tmp_path: Path, base: str, overrides: Mapping[str, Any], *, preview: bool = False
) -> PlanResult:
    """Run `base`'s stack file with some project keys replaced (e.g. `{"network": {...}}`)."""
    document = copy.deepcopy(stack_document(base))
    for key, value in overrides.items():
        document["config"][f"{PROJECT}:{key}"] = value
    path = tmp_path / f"Pulumi.{base}-variant.yaml"
    path.write_text(yaml.safe_dump(document))
    return run_stack(base, preview=preview, config_path=path)


def of_type(result: PlanResult, type_: str) -> list[Registration]:
    return [r for r in result.resources if r.type == type_]


def one(result: PlanResult, type_: str) -> Registration:
    found = of_type(result, type_)
    assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
    return found[0]


def named(result: PlanResult, name: str, type_: str | None = None) -> Registration:
    found = [r for r in result.resources if r.name == name and type_ in (None, r.type)]
    assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
    return found[0]


def is_secret(value: object) -> bool:
    return isinstance(value, Mapping) and SECRET_SIG in value
