"""Check a deployment's control-plane data before anything is rendered or written.

Pure. Most bad revisions then fail with a precise reason naming the control-plane field and value
(never a secret's value), before the API server rejects an object halfway through a rollout or a
kubelet fails a pod. The rules are Kubernetes' own (apimachinery validation: names, label and
annotation keys and values, Secret keys, quantities, requests <= limits; the kubelet's image
reference grammar) plus the listener's: names it reserves for its own volumes, containers, mounts,
labels and environment, and no `hostPath` volumes or privileged containers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from listener import naming
from listener.render.pods import TMP_VOLUME
from listener.render.resources import (
    Compute,
    api_compute,
    cpu_quantity,
    db_compute,
    queue_compute,
    redis_compute,
)
from listener.render.secrets import STORE_URI_VARS
from listener.render.servers import API_PORT_NAME, AUTOMATIC_ENV, QUEUE_PORT_NAME
from listener.render.stores import PG_DATA_VOLUME
from listener.spec import AgentServerSpec

RS = "source_config.resource_spec"

# apimachinery/pkg/util/validation/validation.go
_DNS1123_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_MAP_KEY: Final = re.compile(r"^[-._a-zA-Z0-9]+$")  # Secret data keys use the same rule
_ENV_VAR_NAME: Final = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# distribution/reference's grammar (what the kubelet parses; anything else is InvalidImageName).
_IMAGE: Final = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*"
    r"[a-zA-Z0-9]))*(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]*)"
    r"[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:"
    r"[0-9a-fA-F]{32,})?$"
)
MAX_SECRET_BYTES: Final = 1024 * 1024  # a Secret's data may not exceed 1 MiB
MAX_ANNOTATION_BYTES: Final = 256 * 1024  # total size of all annotation keys and values
MAX_REPLICAS: Final = 1000
"""Far above any real Agent Server; a typo such as 10000 is refused rather than scheduled."""
RESERVED_PREFIX: Final = "langsmith-dataplane/"
RESERVED_CONTAINERS: Final = frozenset({API_PORT_NAME, QUEUE_PORT_NAME})
RESERVED_VOLUMES: Final = frozenset({TMP_VOLUME})
RESERVED_MOUNT_PATHS: Final = frozenset({"/tmp"})  # noqa: S108 -- the listener's own emptyDir mount
RESERVED_ENV: Final = frozenset({*AUTOMATIC_ENV, *STORE_URI_VARS})

# Kubernetes' own wording (k8s.io/apimachinery/pkg/util/validation), so a message reads the same as
# the API server's would, and searching for it finds the rule.
CONFIG_KEY_MSG: Final = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
    "(e.g. 'key.name', or 'KEY_NAME', or 'key-name')"
)
SUBDOMAIN_MSG: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com')"
)
LABEL_MSG: Final = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')"
)
LABEL_VALUE_MSG: Final = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
    "must start and end with an alphanumeric character (at most 63 characters)"
)
ENV_NAME_MSG: Final = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
    "and must not start with a digit"
)


@dataclass(frozen=True)
class Problem:
    """One reason the data cannot be deployed: the control-plane field, and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidDeployment(ValueError):
    """The deployment's data fails validation; `str()` lists every problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("invalid deployment data: " + "; ".join(str(p) for p in problems))


def check(spec: AgentServerSpec) -> None:
    """Raise `InvalidDeployment` listing every problem, or return."""
    problems = validate(spec)
    if problems:
        raise InvalidDeployment(problems)


def validate(spec: AgentServerSpec) -> list[Problem]:
    problems: list[Problem] = []
    problems += _image("source_revision_config.image_uri", spec.image)
    problems += _secrets(spec)
    problems += _resources(spec)
    problems += _metadata(spec)
    problems += _pod_parts(spec)
    problems += _foreign_secrets(spec)
    problems += _foreign_claims(spec)
    return problems


# `postgres-data-<slug>-<8 hex>-pg-<ordinal>`: the claims the StatefulSet makes for a deployment's database.
_MANAGED_CLAIM: Final = re.compile(rf"^{re.escape(PG_DATA_VOLUME)}-.+-([0-9a-f]{{8}})-pg-[0-9]+$")


def _foreign_claims(spec: AgentServerSpec) -> list[Problem]:
    """Never another deployment's database volume: the same rule as its Secrets (a deployment that
    mounts it reads and writes another tenant's data in a shared namespace)."""
    own = naming.id_hash(spec.deployment_id)
    problems = []
    for i, volume in enumerate(spec.resources.volumes):
        name = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        match = _MANAGED_CLAIM.match(name) if isinstance(name, str) else None
        if match and match.group(1) != own:
            problems.append(
                Problem(
                    f"{RS}.volumes[{i}].persistentVolumeClaim.claimName",
                    f"{name!r} is another deployment's database volume, managed by the listener",
                )
            )
    return problems


# `<slug>-<8 hex>-pg`, `-redis`, `-env-<10 hex>`: the Secrets the listener writes for a deployment.
_MANAGED_SECRET: Final = re.compile(r"^.+-([0-9a-f]{8})-(pg|redis|store|env-[0-9a-f]{10})$")
"""`naming.ObjectNames`' Secrets: in-cluster passwords, managed-store credentials, env Secrets."""


def _foreign_secrets(spec: AgentServerSpec) -> list[Problem]:
    """A deployment may read Secrets that exist in its namespace, but never another deployment's
    passwords or environment: in a namespace shared across workspaces that would hand one tenant
    another's database credentials."""
    own = naming.id_hash(spec.deployment_id)
    rs = spec.resources
    referenced: list[tuple[str, Any]] = [
        (f"secret_references[{i}].secret_name", r.secret_name) for i, r in enumerate(spec.secret_references)
    ]
    for i, volume in enumerate(rs.volumes):
        referenced.append(
            (f"{RS}.volumes[{i}].secret.secretName", (volume.get("secret") or {}).get("secretName"))
        )
        for j, source in enumerate((volume.get("projected") or {}).get("sources") or []):
            name = ((source or {}).get("secret") or {}).get("name")
            referenced.append((f"{RS}.volumes[{i}].projected.sources[{j}].secret.name", name))
    for group, containers in (("init_containers", rs.init_containers), ("sidecars", rs.sidecars)):
        for i, container in enumerate(containers):
            for j, env in enumerate(container.get("env") or []):
                ref = ((env or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
                referenced.append(
                    (f"{RS}.{group}[{i}].env[{j}].valueFrom.secretKeyRef.name", ref.get("name"))
                )
            for j, source in enumerate(container.get("envFrom") or []):
                referenced.append(
                    (
                        f"{RS}.{group}[{i}].envFrom[{j}].secretRef.name",
                        ((source or {}).get("secretRef") or {}).get("name"),
                    )
                )
    problems = []
    for field, name in referenced:
        match = _MANAGED_SECRET.match(name) if isinstance(name, str) else None
        if match and match.group(1) != own:
            problems.append(
                Problem(field, f"{name!r} is another deployment's Secret, managed by the listener")
            )
    return problems


# --- pieces -----------------------------------------------------------------------------------


def is_image_reference(image: str) -> bool:
    """The kubelet's image reference grammar (also what `LISTENER_*_IMAGE` settings must follow)."""
    return len(image) <= 4096 and bool(_IMAGE.match(image))


def _image(field: str, image: Any) -> list[Problem]:
    if not isinstance(image, str) or not image:
        return [Problem(field, "is required")]
    if image != image.strip():
        return [Problem(field, f"{image!r} must not have leading or trailing whitespace")]
    if any(c.isspace() for c in image):
        return [Problem(field, f"{image!r} contains whitespace")]
    if not is_image_reference(image):
        return [Problem(field, f"{image!r} is not a valid image reference")]
    return []


def _secrets(spec: AgentServerSpec) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    size = 0
    for index, (name, value) in enumerate(spec.secrets):
        field = f"secrets[{index}].name"
        if not _CONFIG_MAP_KEY.match(name) or len(name) > 253:
            problems.append(Problem(field, f"{name!r}: {CONFIG_KEY_MSG} (at most 253)"))
        if name in seen:
            problems.append(Problem(field, f"{name!r} is listed twice"))
        seen.add(name)
        size += len(name) + len(value.value.encode())
    if size > MAX_SECRET_BYTES // 2:
        # Half: the platform's variables and store URIs share the Secret, and base64 never counts.
        problems.append(Problem("secrets", f"total size {size} bytes is above {MAX_SECRET_BYTES // 2}"))
    for index, ref in enumerate(spec.secret_references):
        field = f"secret_references[{index}]"
        if not _ENV_VAR_NAME.match(ref.name):
            problems.append(Problem(f"{field}.name", f"{ref.name!r}: {ENV_NAME_MSG}"))
        elif ref.name in RESERVED_ENV:
            problems.append(
                Problem(f"{field}.name", f"{ref.name!r} is set by the listener and cannot be overridden")
            )
        elif ref.name in seen:
            problems.append(Problem(f"{field}.name", f"{ref.name!r} is also a secret of this deployment"))
        seen.add(ref.name)
        if not _is_subdomain(ref.secret_name):
            problems.append(Problem(f"{field}.secret_name", f"{ref.secret_name!r}: {SUBDOMAIN_MSG}"))
        if not _CONFIG_MAP_KEY.match(ref.secret_key) or len(ref.secret_key) > 253:
            problems.append(Problem(f"{field}.secret_key", f"{ref.secret_key!r}: {CONFIG_KEY_MSG}"))
    return problems


_SCALES = (
    ("min_scale", "max_scale"),
    ("queue_min_scale", "queue_max_scale"),
)


def _resources(spec: AgentServerSpec) -> list[Problem]:
    rs = spec.resources
    problems: list[Problem] = []
    for low, high in _SCALES:
        lo, hi = getattr(rs, low), getattr(rs, high)
        for name, value in ((low, lo), (high, hi)):
            if value is not None and not 0 <= value <= MAX_REPLICAS:
                problems.append(Problem(f"{RS}.{name}", f"{value} is outside 0..{MAX_REPLICAS}"))
        # min above max is not an error: the control plane materialises max_scale=1 next to a
        # min_scale the user set, and it means "fixed at min" (listener.render.resources.api_scale).
    for prefix, compute in (
        ("", api_compute(rs)),
        ("queue_", queue_compute(rs)),
        ("redis_", redis_compute(rs)),
        ("db_", db_compute(rs)),
    ):
        problems += _compute(prefix, compute)
    if rs.db_storage_gi is not None and not 1 <= rs.db_storage_gi <= 65536:
        problems.append(Problem(f"{RS}.db_storage_gi", f"{rs.db_storage_gi} is outside 1..65536"))
    if rs.db_max_connections is not None and not 1 <= rs.db_max_connections <= 262143:
        # Postgres' own bound for max_connections.
        problems.append(Problem(f"{RS}.db_max_connections", f"{rs.db_max_connections} is outside 1..262143"))
    return problems


def _compute(prefix: str, compute: Compute) -> list[Problem]:
    problems = []
    for name, value in (
        ("cpu", compute.cpu),
        ("cpu_limit", compute.cpu_limit),
        ("memory_mb", compute.memory_mb),
        ("memory_limit_mb", compute.memory_limit_mb),
    ):
        if value is None or value <= 0:
            problems.append(Problem(f"{RS}.{prefix}{name}", f"{value} must be greater than 0"))
    if not problems:
        # The API server rejects a request above its limit (422); say which fields, with the values
        # after the documented defaults (limit = 2 x request) are applied.
        if compute.cpu > compute.cpu_limit:
            problems.append(
                Problem(
                    f"{RS}.{prefix}cpu",
                    f"{compute.cpu} is above {prefix}cpu_limit ({compute.cpu_limit}): must be less than or "
                    f"equal to cpu limit of {cpu_quantity(compute.cpu_limit)}",
                )
            )
        if compute.memory_mb > compute.memory_limit_mb:
            problems.append(
                Problem(
                    f"{RS}.{prefix}memory_mb",
                    f"{compute.memory_mb} is above {prefix}memory_limit_mb ({compute.memory_limit_mb}): must be "
                    f"less than or equal to memory limit of {compute.memory_limit_mb}Mi",
                )
            )
    return problems


def _metadata(spec: AgentServerSpec) -> list[Problem]:
    rs = spec.resources
    problems: list[Problem] = []
    for key, value in rs.labels:
        field = f"{RS}.labels[{key!r}]"
        problems += _qualified_key(field, key)
        if key in naming.OWNERSHIP_LABELS or key.startswith(RESERVED_PREFIX):
            problems.append(Problem(field, "is a label the listener sets itself"))
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append(Problem(field, f"value {value!r}: {LABEL_VALUE_MSG}"))
    total = 0
    for key, value in rs.annotations:
        field = f"{RS}.annotations[{key!r}]"
        problems += _qualified_key(field, key)
        if key.startswith(RESERVED_PREFIX):
            problems.append(Problem(field, "is an annotation the listener sets itself"))
        total += len(key) + len(value)
    if total > MAX_ANNOTATION_BYTES // 2:
        problems.append(
            Problem(f"{RS}.annotations", f"total size {total} bytes is above {MAX_ANNOTATION_BYTES // 2}")
        )
    if rs.service_account_name is not None and not _is_subdomain(rs.service_account_name):
        problems.append(
            Problem(
                f"{RS}.service_account_name",
                f"{rs.service_account_name!r}: {SUBDOMAIN_MSG}",
            )
        )
    for index, name in enumerate(rs.image_pull_secrets):
        if not _is_subdomain(name):
            problems.append(Problem(f"{RS}.image_pull_secrets[{index}].name", f"{name!r}: {SUBDOMAIN_MSG}"))
    return problems


def _pod_parts(spec: AgentServerSpec) -> list[Problem]:
    rs = spec.resources
    problems: list[Problem] = []
    volumes: set[str] = set()
    for index, volume in enumerate(rs.volumes):
        field = f"{RS}.volumes[{index}]"
        name = volume.get("name")
        if not isinstance(name, str) or not _is_label(name):
            problems.append(Problem(f"{field}.name", f"{name!r}: {LABEL_MSG}"))
        elif name in RESERVED_VOLUMES:
            problems.append(Problem(f"{field}.name", f"{name!r} is reserved by the listener"))
        elif name in volumes:
            problems.append(Problem(f"{field}.name", f"{name!r} is listed twice"))
        if "hostPath" in volume:
            problems.append(
                Problem(f"{field}.hostPath", "hostPath volumes are not allowed (they expose the node)")
            )
        if isinstance(name, str):
            volumes.add(name)
    problems += _mounts(f"{RS}.volume_mounts", rs.volume_mounts, volumes)
    names: set[str] = set(RESERVED_CONTAINERS)
    for group, containers in (("init_containers", rs.init_containers), ("sidecars", rs.sidecars)):
        for index, container in enumerate(containers):
            problems += _container(f"{RS}.{group}[{index}]", container, names, volumes)
    return problems


def _mounts(field: str, mounts: Iterable[Mapping[str, Any]], volumes: set[str]) -> list[Problem]:
    problems = []
    paths: set[str] = set()
    for index, mount in enumerate(mounts):
        name, path = mount.get("name"), mount.get("mountPath")
        if name not in volumes:
            problems.append(Problem(f"{field}[{index}].name", f"{name!r} names no volume of this deployment"))
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append(Problem(f"{field}[{index}].mountPath", f"{path!r} is not an absolute path"))
        elif path.rstrip("/") in RESERVED_MOUNT_PATHS:
            problems.append(Problem(f"{field}[{index}].mountPath", f"{path!r} is used by the listener"))
        elif path in paths:
            problems.append(Problem(f"{field}[{index}].mountPath", f"{path!r} is mounted twice"))
        if isinstance(path, str):
            paths.add(path)
    return problems


def _container(field: str, container: Mapping[str, Any], names: set[str], volumes: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    name = container.get("name")
    if not isinstance(name, str) or not _is_label(name):
        problems.append(Problem(f"{field}.name", f"{name!r}: {LABEL_MSG}"))
    elif name in names:
        why = "is reserved by the listener" if name in RESERVED_CONTAINERS else "is used by another container"
        problems.append(Problem(f"{field}.name", f"{name!r} {why}"))
    if isinstance(name, str):
        names.add(name)
    problems += _image(f"{field}.image", container.get("image"))
    security = container.get("securityContext") or {}
    if security.get("privileged"):
        problems.append(
            Problem(f"{field}.securityContext.privileged", "privileged containers are not allowed")
        )
    if security.get("allowPrivilegeEscalation"):
        problems.append(
            Problem(
                f"{field}.securityContext.allowPrivilegeEscalation", "privilege escalation is not allowed"
            )
        )
    if ((security.get("capabilities") or {}).get("add")) or []:
        problems.append(
            Problem(f"{field}.securityContext.capabilities.add", "adding capabilities is not allowed")
        )
    for index, env in enumerate(container.get("env") or []):
        env_name = env.get("name") if isinstance(env, Mapping) else None
        if not isinstance(env_name, str) or not _ENV_VAR_NAME.match(env_name):
            problems.append(Problem(f"{field}.env[{index}].name", f"{env_name!r}: {ENV_NAME_MSG}"))
    problems += _mounts(
        f"{field}.volumeMounts", container.get("volumeMounts") or [], volumes | RESERVED_VOLUMES
    )
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for resource in sorted(set(requests) | set(limits)):
        parsed = {}
        for kind, values in (("requests", requests), ("limits", limits)):
            if resource in values:
                amount = quantity(values[resource])
                if amount is None:
                    problems.append(
                        Problem(
                            f"{field}.resources.{kind}.{resource}", f"{values[resource]!r} is not a quantity"
                        )
                    )
                else:
                    parsed[kind] = amount
        if "requests" in parsed and "limits" in parsed and parsed["requests"] > parsed["limits"]:
            problems.append(
                Problem(
                    f"{field}.resources.requests.{resource}",
                    f"{requests[resource]!r} is above the limit {limits[resource]!r}",
                )
            )
    return problems


# --- Kubernetes name and quantity rules -------------------------------------------------------


def _is_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1123_LABEL.match(name))


def _is_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.match(name))


def _qualified_key(field: str, key: str) -> list[Problem]:
    """A label/annotation key: `[prefix/]name`, prefix a DNS subdomain, name at most 63 characters."""
    prefix, _, name = key.rpartition("/")
    if (prefix and not _is_subdomain(prefix)) or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return [Problem(field, f"key {key!r} is not a valid qualified name")]
    return []


_SUFFIXES: Final = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY: Final = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?)$"
)


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes resource quantity (`500m`, `1.5`, `2Gi`, `1e3`) as a number, or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value)) if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value)
    if not match:
        return None
    number, exponent, suffix = match.groups()
    try:
        amount = Decimal(number + (exponent or ""))
    except InvalidOperation:
        return None
    if amount < 0:
        return None
    return amount * _SUFFIXES[suffix or ""]
