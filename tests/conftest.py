"""Shared fixtures: stack plans are computed once per test session (the program is deterministic)."""

from __future__ import annotations

import functools

import pytest

from tools.harness import PlanResult, run_stack
from tools.plan import StackPlan, plan


@functools.cache
def cached_run(stack: str, preview: bool) -> PlanResult:
    return run_stack(stack, preview=preview)


@functools.cache
def cached_plan(stack: str) -> StackPlan:
    return plan(stack)


@pytest.fixture
def stack_run():
    return cached_run
