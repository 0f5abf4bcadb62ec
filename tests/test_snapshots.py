"""Each stack's plan is committed in tests/snapshots/<stack>.json; a change to it shows up in review.

Regenerate after an intended change with `make snapshots` (UPDATE_SNAPSHOTS=1).
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest

from tools.harness import stack_names
from tools.plan import plan, to_document

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"


def rendered(stack: str) -> str:
    stack_plan = plan(stack)
    assert stack_plan.error is None, stack_plan.error
    return json.dumps(to_document(stack_plan), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("stack", stack_names())
def test_plan_matches_snapshot(stack):
    path = SNAPSHOTS / f"{stack}.json"
    current = rendered(stack)
    if UPDATE:
        path.write_text(current)
    assert path.exists(), f"no snapshot for stack '{stack}': run `make snapshots` and commit {path.name}"
    expected = path.read_text()
    if current != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), current.splitlines(True), f"snapshot/{stack}", f"plan/{stack}", n=2
            )
        )
        pytest.fail(
            f"plan of '{stack}' differs from its snapshot (run `make snapshots` if intended):\n{diff[:6000]}"
        )


def test_no_stale_snapshots():
    stale = sorted({p.stem for p in SNAPSHOTS.glob("*.json")} - set(stack_names()))
    assert stale == [], f"snapshots without a stack file: {stale}"


@pytest.mark.parametrize("stack", stack_names())
def test_snapshots_hold_no_secret_values(stack):
    text = (SNAPSHOTS / f"{stack}.json").read_text()
    assert "lsv2_" not in text
    assert "4dabf18193072939515e22adb298388d" not in text, "a secret envelope leaked into a snapshot"
