"""The stack-plans workflow: valid against GitHub's workflow schema, in step with stacks/, pinned,
least-privilege. Schema validation uses check-jsonschema's vendored schema (no network)."""

from __future__ import annotations

import json
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


def test_preview_is_gated_and_runs_the_policy_pack(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["preview"]
    # Environment variables are not visible in a job's `if` (it runs before the environment is
    # chosen), so the switch is a repository variable.
    assert "vars.PREVIEWS == 'enabled'" in job["if"]
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


# The Node 24 release of every action the workflow uses, by commit. GitHub runs Node 20 actions on
# Node 24 since June 2026 and removes Node 20 from its runners in September 2026
# (https://github.blog/changelog/2025-09-19-deprecation-of-node-20-on-github-actions-runners/);
# each release below declares `runs.using: node24` in its action.yml.
NODE24_RELEASES = {
    "actions/checkout": ("de0fac2e4500dabe0009e67214ff5f5447ce83dd", "v6.0.2"),
    "actions/setup-python": ("a309ff8b426b58ec0e2a45f0f869d46889d02405", "v6.2.0"),
    "aws-actions/configure-aws-credentials": ("8df5847569e6427dd6c4fb1cf565c83acfa8afa7", "v6.0.0"),
    "pulumi/actions": ("8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"),
}


def test_every_action_is_its_node24_release() -> None:
    pins = re.findall(r"uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (v[\d.]+)", WORKFLOW.read_text())
    assert pins
    for action, sha, release in pins:
        assert (sha, release) == NODE24_RELEASES[action], action


def test_previews_run_in_the_stacks_environment(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["preview"]
    # The environment carries the stack's reviewers (staging, prod) and its AWS_ROLE_ARN.
    assert job["environment"] == "${{ matrix.stack }}"
    aws = next(
        s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    )
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"


def test_a_private_stack_can_preview_from_a_runner_in_its_network(workflow: dict[str, Any]) -> None:
    runs_on = workflow["jobs"]["preview"]["runs-on"]
    assert "vars.PREVIEW_RUNNERS" in runs_on
    assert "[matrix.stack]" in runs_on
    assert runs_on.endswith("|| 'ubuntu-24.04' }}")


def test_the_oidc_trust_template_is_scoped_to_one_environment() -> None:
    policy = json.loads((ROOT / "ci" / "oidc-trust-policy.json").read_text())
    (statement,) = policy["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].endswith(":oidc-provider/token.actions.githubusercontent.com")
    # Exact match on both claims (https://docs.github.com/en/actions/security-for-github-actions/
    # security-hardening-your-deployments/configuring-openid-connect-in-amazon-web-services): a job
    # that names an environment gets sub "repo:<owner>/<repo>:environment:<name>", so no branch,
    # pull request or other environment of the repository can assume the role.
    assert set(statement["Condition"]) == {"StringEquals"}
    assert statement["Condition"]["StringEquals"] == {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": "repo:<OWNER>/<REPO>:environment:<STACK>",
    }
