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


def parse(reference: str) -> ImageRef:
    m = _REFERENCE.match(reference)
    if not m:
        lowered = _REFERENCE.match(reference.lower()) if reference.strip() == reference else None
        if lowered and reference.split("@")[0].split(":")[0] != lowered.group("name"):
            raise InvalidImage(f"invalid reference format: repository name ({reference}) must be lowercase")
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
