"""The listener image's recipe, its release workflow and the offline OCI-archive checks.

The image itself is built and run for real by .ci/run (tools/container/build, then
tools/container/smoke.py, which applies these same archive checks to the real export); here the
checks are proven able to fail, on synthetic archives, and the recipe's promises are pinned.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_workflow import check_jsonschema
from tools.container import oci
from tools.harness import ROOT

DOCKERFILE = ROOT / "listener" / "Dockerfile"
WORKFLOW = ROOT / ".github" / "workflows" / "listener-image.yml"
_PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


# --- the Dockerfile --------------------------------------------------------------------------


def test_the_base_is_an_argument_pinned_by_digest() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG BASE=(\S+)$", text, re.M)
    assert base is not None
    assert re.fullmatch(r"docker\.io/library/python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base.group(1))
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE}", "${BASE}"]  # both stages


def test_the_final_stage_runs_as_10001_with_the_listener_as_entrypoint() -> None:
    final = DOCKERFILE.read_text().split("\nFROM ${BASE}\n")[1]
    assert "USER 10001:10001" in final  # a bare uid would run with gid 0
    assert 'ENTRYPOINT ["/opt/listener/bin/python", "-m", "listener"]' in final
    assert "COPY --from=build /opt/listener /opt/listener" in final
    assert "--mount=type=secret" not in final


def test_the_ca_bundle_is_an_optional_build_secret_never_a_copied_file() -> None:
    text = DOCKERFILE.read_text()
    assert "--mount=type=secret,id=cacert,required=false" in text
    assert "PIP_CERT=/run/secrets/cacert" in text
    assert not re.search(r"^(COPY|ADD)\b.*(\.crt|\.pem|cacert)", text, re.M)


def test_the_build_context_leaves_out_the_emulator_and_the_tests() -> None:
    ignore = [
        line
        for line in (ROOT / "listener" / ".dockerignore").read_text().splitlines()
        if line and line[0] != "#"
    ]
    assert ignore[0] == "*"  # deny by default, then allow what is needed
    assert "src/listener/emulator" in ignore
    assert not any(line.startswith("!tests") for line in ignore)


def test_hadolint_passes_on_the_dockerfile_and_fails_on_a_bad_one(tmp_path: Path) -> None:
    hadolint = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "hadolint"
    binary = str(hadolint) if hadolint.exists() else "hadolint"
    ok = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    failed = subprocess.run([binary, str(bad)], capture_output=True, text=True, check=False, timeout=60)
    assert failed.returncode != 0
    assert "DL3013" in failed.stdout  # unpinned pip install


# --- the OCI archive checks ------------------------------------------------------------------


def _layer(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue())


def write_archive(path: Path, config: dict[str, Any], layers: list[dict[str, bytes]]) -> Path:
    """A minimal OCI image layout in a tar, as `podman save --format oci-archive` writes one."""
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer_refs = [add(_layer(files)) for files in layers]
    manifest = {
        "schemaVersion": 2,
        "config": add(json.dumps(config).encode()),
        "layers": layer_refs,
    }
    index = {"schemaVersion": 2, "manifests": [add(json.dumps(manifest).encode())]}
    with tarfile.open(path, "w") as tar:
        entries = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": json.dumps(index).encode()}
        entries.update({f"blobs/sha256/{d.split(':')[1]}": data for d, data in blobs.items()})
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


GOOD_CONFIG = {
    "config": {
        "User": "10001:10001",
        "Entrypoint": ["/opt/listener/bin/python", "-m", "listener"],
        "Env": ["PATH=/opt/listener/bin:/usr/bin", "PYTHONDONTWRITEBYTECODE=1"],
    },
    "history": [{"created_by": "/bin/sh -c set -eu; if [ -s /run/secrets/cacert ]; then ...; fi"}],
}
SITE = "opt/listener/lib/python3.11/site-packages"


def test_a_good_archive_has_no_problems(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.tar", GOOD_CONFIG, [{f"{SITE}/listener/__init__.py": b""}])
    image = oci.read_archive(path)
    assert f"{SITE}/listener/__init__.py" in image.files
    assert oci.problems(image) == []


@pytest.mark.parametrize(
    ("change", "layer", "expected"),
    [
        ({"User": "10001"}, {}, "user is '10001'"),
        ({"Entrypoint": ["python"]}, {}, "entrypoint is"),
        ({"Env": ["LISTENER_API_KEY=lsv2_sk_FAKE"]}, {}, "LISTENER_API_KEY looks like a secret"),
        ({}, {f"{SITE}/listener/emulator/app.py": b""}, "the control-plane emulator is in the image"),
        ({}, {f"{SITE}/pip/__init__.py": b""}, "pip/setuptools is in the image"),
        ({}, {"usr/lib/python3/dist-packages/setuptools/__init__.py": b""}, "pip/setuptools"),
        ({}, {"usr/lib/python3.11/ensurepip/__init__.py": b""}, "ensurepip"),
        ({}, {"run/secrets/cacert": b"-----BEGIN CERTIFICATE-----"}, "a build secret is in the image"),
        ({}, {f"{SITE}/tests/test_x.py": b""}, "tests or tools"),
    ],
)
def test_each_check_can_fail(
    tmp_path: Path, change: dict[str, Any], layer: dict[str, bytes], expected: str
) -> None:
    config = json.loads(json.dumps(GOOD_CONFIG))
    config["config"].update(change)
    path = write_archive(tmp_path / "a.tar", config, [{f"{SITE}/listener/__init__.py": b""}, layer])
    found = oci.problems(oci.read_archive(path))
    assert any(expected in problem for problem in found), found


def test_a_secret_in_the_history_is_found(tmp_path: Path) -> None:
    config = json.loads(json.dumps(GOOD_CONFIG))
    config["history"].append({"created_by": "/bin/sh -c echo '-----BEGIN CERTIFICATE-----' > /ca.pem"})
    found = oci.problems(oci.read_archive(write_archive(tmp_path / "a.tar", config, [{}])))
    assert any("history step looks like it holds a secret" in p for p in found)


def test_whiteouts_remove_files_like_a_runtime_would(tmp_path: Path) -> None:
    layers = [
        {
            f"{SITE}/pip/__init__.py": b"",
            f"{SITE}/pip/_internal/x.py": b"",
            "usr/share/python-wheels/a.whl": b"",
        },
        {f"{SITE}/.wh.pip": b"", "usr/share/python-wheels/.wh..wh..opq": b""},
    ]
    image = oci.read_archive(write_archive(tmp_path / "a.tar", GOOD_CONFIG, layers))
    assert not any("pip" in f for f in image.files if f.startswith(SITE))
    assert "usr/share/python-wheels/a.whl" not in image.files
    assert oci.problems(image) == []


# --- the release workflow --------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def test_the_release_workflow_matches_githubs_schema() -> None:
    result = check_jsonschema(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_runs_on_release_tags_and_by_hand_only(workflow: dict[str, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))
    assert triggers == {"push": {"tags": ["listener-v*"]}, "workflow_dispatch": None}


def test_actions_are_pinned_and_permissions_least_privilege(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    job = workflow["jobs"]["image"]
    assert job["permissions"] == {
        "contents": "read",
        "packages": "write",
        "id-token": "write",
        "attestations": "write",
    }
    uses = [s["uses"] for s in job["steps"] if "uses" in s]
    assert [u for u in uses if not _PINNED.match(u)] == []
    for line in WORKFLOW.read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d+(\.\d+)*$", line), line
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False


def test_it_builds_both_architectures_from_the_listener_folder_and_reports_the_digest(
    workflow: dict[str, Any],
) -> None:
    steps = workflow["jobs"]["image"]["steps"]
    push = next(s for s in steps if s.get("id") == "build")
    assert push["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert push["with"]["context"] == "listener"
    assert push["with"]["file"] == "listener/Dockerfile"
    assert push["with"]["push"] is True
    text = "\n".join(s.get("run", "") for s in steps)
    assert "hadolint listener/Dockerfile" in text
    assert "--read-only --user 10001:10001 --cap-drop ALL" in text
    assert "@sha256:" in text  # the base must be pinned by digest
    assert "${IMAGE}@${DIGEST}" in text
    names = [s.get("uses", "").split("@")[0] for s in steps]
    # Checks before the push, the attestation after it.
    assert names.index("docker/login-action") > names.index("docker/setup-buildx-action")
    assert names.index("actions/attest-build-provenance") > [s.get("id") for s in steps].index("build")
