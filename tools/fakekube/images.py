"""Container image references, parsed like the kubelet does (github.com/distribution/reference).

The API server accepts any non-empty image string in a pod template; the kubelet is the one that
parses it, and a reference that does not parse leaves the container waiting with ``InvalidImageName``.
The parse result also decides the ``imagePullPolicy`` default (``Always`` for ``:latest`` or no tag).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class ImageRef:
    name: str
    tag: str | None
    digest: str | None

    @property
    def effective_tag(self) -> str:
        """The tag the kubelet pulls: ``latest`` when neither a tag nor a digest is given."""
        if self.tag:
            return self.tag
        return "" if self.digest else "latest"


class InvalidImage(ValueError):
    pass


def _split_docker_domain(name: str) -> tuple[str, str]:
    """splitDockerDomain (normalize.go): the remainder gets ``library/`` on Docker Hub."""
    i = name.find("/")
    first = name[:i]
    if i == -1 or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, remainder = "docker.io", name
    else:
        domain, remainder = first, name[i + 1 :]
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    return domain, remainder


_HEX64 = re.compile(r"^[a-f0-9]{64}$")


def parse(reference: str) -> ImageRef:
    """ParseNormalizedNamed: the 64-hex and lowercase checks come before the grammar."""
    if _HEX64.match(reference):
        raise InvalidImage(
            f"invalid repository name ({reference}), cannot specify 64-byte hexadecimal strings"
        )
    _, remainder = _split_docker_domain(reference)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidImage(f"invalid reference format: repository name ({remote}) must be lowercase")
    m = _REFERENCE.match(reference)
    if not m:
        raise InvalidImage("invalid reference format")
    name = m.group("name")
    if len(name) > 255:
        raise InvalidImage("invalid reference format: repository name must not be more than 255 characters")
    digest = m.group("digest")
    if digest:
        algorithm, _, hex_part = digest.partition(":")
        expected = _DIGEST_LENGTHS.get(algorithm)
        if expected is None:
            raise InvalidImage("unsupported digest algorithm")
        if len(hex_part) != expected:
            raise InvalidImage("invalid checksum digest length")
    return ImageRef(name, m.group("tag"), digest)


def default_pull_policy(image: str) -> str:
    """SetDefaults_Container: ``Always`` for ``:latest`` (or no tag), ``IfNotPresent`` otherwise."""
    try:
        ref = parse(image)
    except InvalidImage:
        return "IfNotPresent"
    return "Always" if ref.effective_tag == "latest" else "IfNotPresent"


def kubelet_error(image: str) -> str | None:
    """The kubelet's ``InvalidImageName`` message, or None when the reference parses."""
    try:
        parse(image)
    except InvalidImage as e:
        return f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": {e}'
    return None
