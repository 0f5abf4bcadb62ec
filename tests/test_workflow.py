"""The stack-plans workflow: valid against GitHub's workflow schema, in step with stacks/, pinned,
least-privilege. Schema validation uses check-jsonschema's vendored schema (no network)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.harness import ROOT, stack_names

WORKFLOW = ROOT / ".github" / "workflows" / "stack-plans.yml"
_PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return workflow["jobs"][job]["steps"]


def run_text(workflow: dict[str, Any], job: str) -> str:
    return "\n".join(s.get("run", "") for s in steps(workflow, job))


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_workflow_matches_githubs_schema() -> None:
    result = check_jsonschema(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    # Proves the check above can fail: a job without runs-on and a misspelt permission scope.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_request\npermissions:\n  content: read\njobs:\n  x:\n    steps:\n      - run: 'true'\n"
    )
    result = check_jsonschema(broken)
    assert result.returncode != 0
    assert "Schema validation errors" in result.stdout
    assert "$.jobs.x" in result.stdout


def test_runs_on_every_pull_request(workflow: dict[str, Any]) -> None:
    # PyYAML reads the bare key `on` as the boolean True.
    triggers = workflow.get("on", workflow.get(True))
    assert triggers == {"pull_request": None} or triggers == "pull_request"


def test_preview_matrix_covers_exactly_the_stack_files(workflow: dict[str, Any]) -> None:
    matrix = workflow["jobs"]["preview"]["strategy"]["matrix"]["stack"]
    assert sorted(matrix) == stack_names()
    assert workflow["jobs"]["preview"]["strategy"]["fail-fast"] is False


def test_every_action_is_pinned_to_a_commit(workflow: dict[str, Any]) -> None:
    uses = [s["uses"] for job in workflow["jobs"] for s in steps(workflow, job) if "uses" in s]
    assert uses
    assert [u for u in uses if not _PINNED.match(u)] == []
    # The release each SHA stands for is written next to it, for reviewers and update bots.
    for line in WORKFLOW.read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d+(\.\d+)*$", line), line


def test_permissions_are_least_privilege(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    assert "permissions" not in workflow["jobs"]["offline-plan"]
    assert workflow["jobs"]["preview"]["permissions"] == {
        "contents": "read",
        "id-token": "write",
        "pull-requests": "write",
    }
    for job in workflow["jobs"]:
        for step in steps(workflow, job):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_offline_job_lints_tests_and_plans_every_stack(workflow: dict[str, Any]) -> None:
    text = run_text(workflow, "offline-plan")
    assert "pip install -r requirements-dev.txt" in text
    assert "ruff check ." in text
    assert "ruff format --check ." in text
    assert "python -m pytest" in text
    assert "python -m tools.plan --all" in text
    setup = next(
        s for s in steps(workflow, "offline-plan") if s.get("uses", "").startswith("actions/setup-python@")
    )
    assert setup["with"]["python-version"] == "3.11"


def test_preview_is_gated_on_credentials_and_runs_the_policy_pack(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["preview"]
    assert "vars.AWS_ROLE_ARN != ''" in job["if"]
    assert "head.repo.full_name == github.repository" in job["if"]
    assert job["needs"] == "offline-plan"
    aws = next(
        s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    )
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    pulumi = next(s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
    args = pulumi["with"]
    assert args["command"] == "preview"
    assert args["comment-on-pr"] is True
    assert args["policyPacks"] == "policy"
    assert (ROOT / args["policyPacks"] / "PulumiPolicy.yaml").is_file()
    assert "${{ matrix.stack }}" in args["stack-name"]
    pins = dict(
        line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line
    )
    assert args["pulumi-version"] == pins["pulumi"]
    text = run_text(workflow, "preview")
    assert "pip install -r requirements.txt" in text
    assert "policy/venv/bin/pip install -r policy/requirements.txt" in text
