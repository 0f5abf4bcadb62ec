"""`python -m tools.plan` as users and CI run it: real subprocesses, real exit codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.harness import ROOT, STACKS_DIR


def run_plan(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.plan", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_text_plan_of_dev():
    result = run_plan("dev")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Offline plan for stack 'dev'")
    assert "not a diff against deployed state" in result.stdout
    assert "Resources:" in result.stdout
    assert "Policies:" in result.stdout
    assert "controlPlaneUrl: https://api.host.langchain.com" in result.stdout


def test_json_plan_is_byte_identical_across_runs():
    first, second = run_plan("dev", "--json"), run_plan("dev", "--json")
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    assert '"stack": "dev"' in first.stdout


def test_all_plans_every_stack():
    result = run_plan("--all", "--quiet")
    assert result.returncode == 0, result.stderr
    planned = {line.split()[1].rstrip(":") for line in result.stdout.splitlines() if line.startswith("ok")}
    assert planned == {p.name[len("Pulumi.") : -len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml")}


@pytest.fixture
def checkout_with_bad_stack(tmp_path: Path) -> Path:
    """A copy of the program whose stacks/ also holds a broken stack file."""
    copy = tmp_path / "checkout"
    shutil.copytree(
        ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".ci-venv", ".git", "__pycache__", "listener")
    )
    (copy / "listener").symlink_to(ROOT / "listener")
    dev = (copy / "stacks" / "Pulumi.dev.yaml").read_text()
    broken = dev.replace("namespaces: [agents-dev]", "namespaces: [agents-dev, kube-system]").replace(
        "  langsmith-dataplane:tags:",
        "  langsmith-dataplane:api_key: lsv2_pt_leakme\n  langsmith-dataplane:tags:",
    )
    (copy / "stacks" / "Pulumi.broken.yaml").write_text(broken)
    return copy


def test_bad_stack_exits_non_zero_with_keys_not_a_traceback(checkout_with_bad_stack: Path):
    result = run_plan("broken", cwd=checkout_with_bad_stack)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "langsmith-dataplane:api_key: is stored in plaintext" in result.stderr
    assert "langsmith-dataplane:topology.listeners[0].namespaces[1] (got 'kube-system')" in result.stderr
    assert "lsv2_pt_leakme" not in result.stderr + result.stdout


def test_all_fails_when_one_stack_fails(checkout_with_bad_stack: Path):
    result = run_plan("--all", "--quiet", cwd=checkout_with_bad_stack)
    assert result.returncode == 2
    assert "FAIL  broken" in result.stderr
    assert "ok    dev" in result.stdout


def test_unknown_stack_names_the_known_ones():
    result = run_plan("nope")
    assert result.returncode == 2
    assert "no stack file Pulumi.nope.yaml" in result.stderr
    assert "dev" in result.stderr


def test_a_key_pasted_anywhere_stops_the_plan_without_being_printed(tmp_path: Path) -> None:
    # Before: a key in tags.owner planned fine and landed in every tagged resource of the JSON.
    key = "lsv2_" + "pt_" + "not_a_real_key"  # assembled: detection is by prefix; no key-shaped literal
    copy = tmp_path / "checkout"
    shutil.copytree(
        ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".ci-venv", ".git", "__pycache__", "listener")
    )
    (copy / "listener").symlink_to(ROOT / "listener")
    dev = (copy / "stacks" / "Pulumi.dev.yaml").read_text()
    (copy / "stacks" / "Pulumi.leaky.yaml").write_text(dev.replace("owner: platform-team", f"owner: {key}"))
    for args in (("leaky",), ("leaky", "--json")):
        result = run_plan(*args, cwd=copy)
        assert result.returncode == 2
        assert "langsmith-dataplane:tags.owner: holds what looks like a LangSmith API key" in result.stderr
        assert key not in result.stdout + result.stderr
        assert "lsv2_pt_" not in result.stdout + result.stderr


def test_the_dev_plan_prints_its_warnings():
    result = run_plan("dev")
    assert result.returncode == 0, result.stderr
    assert "Warnings: 1" in result.stdout
    assert "security-group egress states the allowlist but enforces nothing" in result.stdout
    assert "[advisory] egress-not-enforced-in-dev" in result.stdout


def test_broken_yaml_is_reported_without_the_line_it_is_on(tmp_path: Path) -> None:
    # PyYAML's message quotes the offending line; a stack file line may hold a pasted secret.
    from tools.harness import StackFileError, read_stack_file

    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text("config:\n  langsmith-dataplane:name: hunter2-secret-value: [\n")
    with pytest.raises(StackFileError) as caught:
        read_stack_file(path)
    assert "hunter2" not in str(caught.value)
    assert "line 2" in str(caught.value)
