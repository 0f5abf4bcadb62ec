"""Check a listener image exported as an OCI archive (`podman save --format oci-archive`), offline.

What is checked, straight from the archive (index -> manifest -> config and layer blobs):

* the config: user and group 10001, the entrypoint, no secret-looking environment variable;
* the history: no secret-looking text in any step (build secrets must never appear there);
* the files of every layer: nothing under /run/secrets, no `listener/emulator`, no tests, no pip,
  setuptools or ensurepip in the final filesystem (a later layer's whiteout removes a file, so the
  union of layers is computed the way a runtime would).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USER = "10001:10001"
ENTRYPOINT = ["/opt/listener/bin/python", "-m", "listener"]
_SECRET_TEXT = re.compile(
    r"BEGIN (CERTIFICATE|[A-Z ]*PRIVATE KEY)|lsv2_[A-Za-z0-9_]{8,}|(password|token|api[_-]?key)=\S+", re.I
)
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.I)
_FORBIDDEN_PATHS = (
    (re.compile(r"^run/secrets/."), "a build secret"),
    (re.compile(r"(^|/)site-packages/listener/emulator(/|$)"), "the control-plane emulator"),
    (re.compile(r"(^|/)(site|dist)-packages/(pip|setuptools|_distutils_hack)(/|$)"), "pip/setuptools"),
    (re.compile(r"(^|/)ensurepip/"), "ensurepip (a pip installer)"),
    (re.compile(r"(^|/)site-packages/(listener/tests|tools|tests)/"), "the listener's tests or tools"),
)


@dataclass(frozen=True)
class Image:
    config: dict[str, Any]
    files: frozenset[str]
    """Every path in the final filesystem (after whiteouts), without a leading '/'."""


def read_archive(path: Path) -> Image:
    with tarfile.open(path) as archive:

        def blob(digest: str) -> bytes:
            algorithm, _, value = digest.partition(":")
            member = archive.extractfile(f"blobs/{algorithm}/{value}")
            if member is None:
                raise ValueError(f"{path}: blob {digest} is missing")
            return member.read()

        index = json.loads(blob_from(archive, "index.json"))
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        files: set[str] = set()
        for layer in manifest["layers"]:
            data = blob(layer["digest"])
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            _apply_layer(files, data)
    return Image(config=config, files=frozenset(files))


def blob_from(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.extractfile(name)
    if member is None:
        raise ValueError(f"{name} is missing from the archive")
    return member.read()


def _apply_layer(files: set[str], layer: bytes) -> None:
    """Add a layer's paths to `files`, honouring OCI whiteouts (`.wh.name`, `.wh..wh..opq`)."""
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        for member in tar:
            name = member.name.lstrip("./").rstrip("/")
            directory, _, base = name.rpartition("/")
            prefix = f"{directory}/" if directory else ""
            if base == ".wh..wh..opq":
                files.difference_update({f for f in files if f.startswith(prefix)})
            elif base.startswith(".wh."):
                gone = prefix + base.removeprefix(".wh.")
                files.difference_update({f for f in files if f == gone or f.startswith(gone + "/")})
            elif name:
                files.add(name)


def problems(image: Image) -> list[str]:
    found: list[str] = []
    config = image.config.get("config") or {}
    if config.get("User") != USER:
        found.append(f"user is {config.get('User')!r}, expected {USER!r} (a bare uid runs with gid 0)")
    if config.get("Entrypoint") != ENTRYPOINT:
        found.append(f"entrypoint is {config.get('Entrypoint')!r}, expected {ENTRYPOINT!r}")
    for variable in config.get("Env") or []:
        name, _, value = variable.partition("=")
        if _SECRET_ENV.search(name) or _SECRET_TEXT.search(value):
            found.append(f"environment variable {name} looks like a secret")
    for step in image.config.get("history") or []:
        text = step.get("created_by", "")
        if _SECRET_TEXT.search(text):
            found.append(f"history step looks like it holds a secret: {text[:120]!r}")
    found.extend(_forbidden(image.files))
    return found


def _forbidden(files: Iterable[str]) -> list[str]:
    found: dict[str, str] = {}
    for name in sorted(files):
        for pattern, what in _FORBIDDEN_PATHS:
            if pattern.search(name) and what not in found:
                found[what] = name
    return [f"{what} is in the image: /{name}" for what, name in found.items()]
