"""The data plane's policies, shared by CrossGuard (`policy/__main__.py`) and the offline check
(`policy/offline.py`).

Two layers. Pure functions take plain data (a type token and a props mapping, or `Resource`
records) and return violation messages; they read props the way either caller hands them over:
camelCase keys, numbers as floats, secrets as wire envelopes or already unwrapped, unknowns as
`pulumi.output.Unknown`, as the engine's sentinel strings, or behind the engine's
unknown-checking proxy. An unknown value is never guessed at: the check it feeds is skipped.
The Pulumi shell at the bottom wraps them into `ResourceValidationPolicy`/`StackValidationPolicy`.

This module must stay importable on its own: the real pack runs from `policy/` with only
`policy/requirements.txt` installed, so it imports nothing from the program.

Conventions the other components follow (tags, because they are visible in every preview):
* `langsmith-dataplane/role: control-plane-egress` on the security group that holds the IP
  allowlist to the LangSmith control plane, and/or on each of its egress rules.
* `langsmith-dataplane/role: firewall-egress` on a security group or egress rule whose traffic
  leaves through the AWS Network Firewall (domain allowlist, default drop). Only such rules may
  name 0.0.0.0/0, only on TCP 80/443, and only in a stack that has a firewall.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY
from pulumi_policy.proxy import UnknownValueError

PACK_NAME = "langsmith-dataplane"
PACK_ENFORCEMENT = EnforcementLevel.MANDATORY

REQUIRED_TAGS = ("owner", "cost-center", "environment")
"""`components.config.REQUIRED_TAG_KEYS` plus `environment` (a test keeps them in step)."""
ROLE_TAG = "langsmith-dataplane/role"
CONTROL_PLANE_EGRESS = "control-plane-egress"
FIREWALL_EGRESS = "firewall-egress"
CONTROL_PLANE_PORT = 443
FIREWALL_PORTS = frozenset({80, 443})  # what the firewall's TLS_SNI / HTTP_HOST rules inspect

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
NETWORK_FIREWALL = "aws:networkfirewall/firewall:Firewall"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"

# pulumi_policy.proxy's UNKNOWN_*_VALUE sentinels: what the engine puts where a value is unknown.
_ENGINE_UNKNOWNS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
        "030794c1-ac77-496b-92df-f27374a8bd58",
        "e48ece36-62e2-4504-bad9-02848725956a",
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
    }
)


class _Unknown:
    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        raise TypeError("an unknown value has no truth value; compare with `is UNKNOWN`")


UNKNOWN: Any = _Unknown()
"""A value not known until apply (preview). Checks that need it are skipped, never guessed."""


# --- Reading props -----------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """One value as plain data: secret envelopes unwrapped, every unknown form as `UNKNOWN`."""
    if value is UNKNOWN:
        return UNKNOWN
    if isinstance(value, str):
        return UNKNOWN if value in _ENGINE_UNKNOWNS else value
    if type(value).__name__ == "Unknown":  # pulumi.output.Unknown, as the mocks record it
        return UNKNOWN
    if type(value).__name__ == "Secret" and hasattr(value, "value"):  # pulumi_policy.secret.Secret
        return plain(value.value)
    if isinstance(value, Mapping):
        try:
            if value.get(SPECIAL_SIG_KEY) == SPECIAL_SECRET_SIG:
                return plain(value.get("value"))
        except UnknownValueError:
            return value
    return value


def lookup(value: Any, *path: str | int) -> Any:
    """`value[path[0]][path[1]]…` as plain data; None where missing, `UNKNOWN` where unknown."""
    current = plain(value)
    for key in path:
        if current is UNKNOWN or current is None:
            return current
        try:
            if isinstance(key, int):
                if not isinstance(current, Sequence) or isinstance(current, str) or key >= len(current):
                    return None
                current = current[key]
            else:
                if not isinstance(current, Mapping):
                    return None
                current = current.get(key)
        except UnknownValueError:
            return UNKNOWN
        current = plain(current)
    return current


def entries(value: Any) -> list[Any] | Any:
    """A list's elements as plain data: [] for missing, `UNKNOWN` for an unknown list."""
    value = plain(value)
    if value is None:
        return []
    if value is UNKNOWN:
        return UNKNOWN
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [value]
    items = []
    for index in range(len(value)):
        try:
            items.append(plain(value[index]))
        except UnknownValueError:
            items.append(UNKNOWN)
    return items


def flag(value: Any) -> bool | Any | None:
    """True/False, None when unset, `UNKNOWN` when unknown; accepts "true"/"false" strings."""
    value = plain(value)
    if value is None or value is UNKNOWN or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def number(value: Any) -> int | Any | None:
    value = plain(value)
    if value is None or value is UNKNOWN:
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def tags_of(props: Mapping[str, Any]) -> dict[str, Any] | Any:
    """The resource's tags as a plain dict (values may be `UNKNOWN`), or `UNKNOWN` if unknown."""
    tags = lookup(props, "tags")
    if tags is UNKNOWN:
        return UNKNOWN
    if not isinstance(tags, Mapping):
        return {}
    return {str(k): lookup(tags, str(k)) for k in list(tags)}


def is_open_cidr(cidr: Any) -> bool:
    """0.0.0.0/0, ::/0 or any other spelling of "every address"."""
    if not isinstance(cidr, str):
        return False
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


# --- Resource checks (pure) --------------------------------------------------------------------


def rds_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if resource_type not in (RDS_INSTANCE, RDS_CLUSTER):
        return []
    messages = []
    # AWS leaves RDS storage unencrypted unless asked, so an unset flag is a violation.
    if flag(lookup(props, "storageEncrypted")) not in (True, UNKNOWN):
        messages.append(
            "storageEncrypted must be true: database storage, backups and snapshots stay encrypted"
        )
    if flag(lookup(props, "publiclyAccessible")) is True:
        messages.append("publiclyAccessible must be false: the database is reached from the cluster only")
    return messages


def elasticache_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if resource_type != REPLICATION_GROUP:
        return []
    messages = []
    if flag(lookup(props, "atRestEncryptionEnabled")) not in (True, UNKNOWN):
        messages.append("atRestEncryptionEnabled must be true")
    if flag(lookup(props, "transitEncryptionEnabled")) not in (True, UNKNOWN):
        messages.append(
            "transitEncryptionEnabled must be true: the auth token must never cross the VPC in clear"
        )
    return messages


def eks_endpoint_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if resource_type != EKS_CLUSTER:
        return []
    vpc_config = lookup(props, "vpcConfig")
    if vpc_config is UNKNOWN:
        return []
    public = flag(lookup(vpc_config, "endpointPublicAccess"))
    if public is UNKNOWN or public is False:
        return []
    # Unset means public: AWS's default for a new cluster's endpoint.
    cidrs = entries(lookup(vpc_config, "publicAccessCidrs"))
    if cidrs is UNKNOWN:
        return []
    if not cidrs:
        return [
            "the API endpoint is public with no publicAccessCidrs, which AWS reads as 0.0.0.0/0; "
            "make it private (endpointPublicAccess: false) or list the CIDRs that need it"
        ]
    return [
        f"publicAccessCidrs includes {cidr}: the API endpoint would be open to the whole internet"
        for cidr in cidrs
        if is_open_cidr(cidr)
    ]


def deletion_protection_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    # The attribute is `deletionProtection` on RDS and EKS, `deleteProtection` on Network Firewall.
    attribute = {
        RDS_INSTANCE: "deletionProtection",
        RDS_CLUSTER: "deletionProtection",
        EKS_CLUSTER: "deletionProtection",
        NETWORK_FIREWALL: "deleteProtection",
    }.get(resource_type)
    if attribute is None:
        return []
    tags = tags_of(props)
    if tags is UNKNOWN or tags.get("environment") != "prod":
        return []
    if flag(lookup(props, attribute)) in (True, UNKNOWN):
        return []
    return [f"{attribute} must be true in prod (environment tag 'prod')"]


@functools.cache
def schema_has_tags(resource_type: str) -> bool | None:
    """Whether the pulumi_aws resource class for `resource_type` takes `tags`; None if unknown.

    The SDK classes are generated from the provider schema, so this is the provider's own answer
    for whichever pulumi_aws version is pinned, with no hand-kept list to fall out of date.
    """
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "aws":
        return None
    module, class_name = parts[1].split("/")[0], parts[2]
    try:
        package = importlib.import_module("pulumi_aws" if module == "index" else f"pulumi_aws.{module}")
        cls = getattr(package, class_name)
        return "tags" in inspect.signature(cls._internal_init).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


def is_taggable(resource_type: str, props: Mapping[str, Any]) -> bool:
    if not resource_type.startswith("aws:"):
        return False
    known = schema_has_tags(resource_type)
    # A type the installed SDK doesn't know: judge by whether the resource sets tags at all.
    return known if known is not None else lookup(props, "tags") is not None


def missing_tag_violations(
    resource_type: str, props: Mapping[str, Any], required: Iterable[str] = REQUIRED_TAGS
) -> list[str]:
    if not is_taggable(resource_type, props):
        return []
    tags = tags_of(props)
    if tags is UNKNOWN:
        return []
    missing = [key for key in required if tags.get(key) is not UNKNOWN and not tags.get(key)]
    if not missing:
        return []
    return [
        f"missing required tag(s) {', '.join(missing)}: set them on the resource (not only as default_tags)"
    ]


def kubernetes_provider_violations(resource_type: str, provider_name: str | None) -> list[str]:
    """Kubernetes resources must name the stack's provider, never the ambient kubeconfig's."""
    if not resource_type.startswith("kubernetes:"):
        return []
    if not provider_name or provider_name == "default" or provider_name.startswith("default_"):
        return [
            "uses the default Kubernetes provider (the ambient kubeconfig); pass the cluster's "
            "provider through opts"
        ]
    return []


# --- Stack checks (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """What the stack checks need of one resource; built from CrossGuard's or the mocks' view."""

    type: str
    urn: str
    name: str
    props: Mapping[str, Any]
    dependencies: tuple[str, ...] = ()
    property_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class EgressRule:
    resource: Resource
    label: str
    protocol: Any  # "tcp", "udp", "icmp", "all", … or UNKNOWN
    from_port: Any
    to_port: Any
    cidrs: tuple[Any, ...]
    security_groups: tuple[Resource, ...]
    """The security group(s) the rule belongs to."""


def _protocol(value: Any) -> Any:
    value = plain(value)
    if value is UNKNOWN or value is None:
        return value
    text = str(value).lower()
    return {"-1": "all", "6": "tcp", "17": "udp", "1": "icmp"}.get(text, text)


def _role(resource: Resource) -> Any:
    tags = tags_of(resource.props)
    return UNKNOWN if tags is UNKNOWN else tags.get(ROLE_TAG)


def _owning_groups(rule: Resource, by_urn: Mapping[str, Resource]) -> tuple[Resource, ...]:
    # The engine says which resources feed `securityGroupId`; the mocks only give all
    # dependencies, and a CIDR rule's only security-group dependency is its own group.
    urns = rule.property_dependencies.get("securityGroupId") or rule.dependencies
    return tuple(by_urn[u] for u in urns if u in by_urn and by_urn[u].type == SECURITY_GROUP)


def egress_rules(resources: Sequence[Resource]) -> list[EgressRule]:
    """Every egress rule in the stack, whichever of the three AWS spellings declares it."""
    by_urn = {r.urn: r for r in resources}
    rules: list[EgressRule] = []
    for r in resources:
        if r.type == SECURITY_GROUP:
            inline = entries(lookup(r.props, "egress"))
            for index, entry in enumerate([] if inline is UNKNOWN else inline):
                cidrs = entries(lookup(entry, "cidrBlocks")), entries(lookup(entry, "ipv6CidrBlocks"))
                rules.append(
                    EgressRule(
                        r,
                        f"egress[{index}]",
                        _protocol(lookup(entry, "protocol")),
                        number(lookup(entry, "fromPort")),
                        number(lookup(entry, "toPort")),
                        tuple(c for group in cidrs if group is not UNKNOWN for c in group),
                        (r,),
                    )
                )
        elif r.type == SECURITY_GROUP_RULE:
            if plain(lookup(r.props, "type")) != "egress":
                continue
            cidrs = entries(lookup(r.props, "cidrBlocks")), entries(lookup(r.props, "ipv6CidrBlocks"))
            rules.append(
                EgressRule(
                    r,
                    "rule",
                    _protocol(lookup(r.props, "protocol")),
                    number(lookup(r.props, "fromPort")),
                    number(lookup(r.props, "toPort")),
                    tuple(c for group in cidrs if group is not UNKNOWN for c in group),
                    _owning_groups(r, by_urn),
                )
            )
        elif r.type == EGRESS_RULE:
            cidrs = tuple(
                c for c in (lookup(r.props, "cidrIpv4"), lookup(r.props, "cidrIpv6")) if c is not None
            )
            rules.append(
                EgressRule(
                    r,
                    "rule",
                    _protocol(lookup(r.props, "ipProtocol")),
                    number(lookup(r.props, "fromPort")),
                    number(lookup(r.props, "toPort")),
                    cidrs,
                    _owning_groups(r, by_urn),
                )
            )
    return rules


def _has_role(rule: EgressRule, role: str) -> bool:
    return _role(rule.resource) == role or any(_role(sg) == role for sg in rule.security_groups)


def _ports(rule: EgressRule) -> str:
    if rule.protocol == "all":
        return "all traffic"
    return f"{rule.protocol} {rule.from_port}-{rule.to_port}"


def _single_port(rule: EgressRule) -> int | None:
    if rule.protocol != "tcp" or rule.from_port is UNKNOWN or rule.from_port != rule.to_port:
        return None
    return rule.from_port


def open_egress_violations(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    has_firewall = any(r.type == NETWORK_FIREWALL for r in resources)
    found: list[tuple[str, str]] = []
    for rule in egress_rules(resources):
        for cidr in rule.cidrs:
            if not is_open_cidr(cidr):
                continue
            where = f"{rule.resource.name} {rule.label}: egress to {cidr} ({_ports(rule)})"
            if _has_role(rule, CONTROL_PLANE_EGRESS):
                found.append(
                    (
                        rule.resource.urn,
                        f"{where} on the control-plane egress group; list the control-plane CIDRs",
                    )
                )
            elif not _has_role(rule, FIREWALL_EGRESS):
                found.append(
                    (
                        rule.resource.urn,
                        f"{where} opens the data plane to the whole internet; allow specific CIDRs, or tag "
                        f"the rule {ROLE_TAG}={FIREWALL_EGRESS} and route it through the network firewall",
                    )
                )
            elif not has_firewall:
                found.append(
                    (
                        rule.resource.urn,
                        f"{where} is tagged {FIREWALL_EGRESS} but the stack has no network firewall",
                    )
                )
            elif _single_port(rule) not in FIREWALL_PORTS:
                found.append(
                    (
                        rule.resource.urn,
                        f"{where}: through the firewall only TCP 80 or 443, one port per rule",
                    )
                )
    return found


def control_plane_egress_violations(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for rule in egress_rules(resources):
        if not _has_role(rule, CONTROL_PLANE_EGRESS):
            continue
        if rule.protocol is UNKNOWN or rule.from_port is UNKNOWN or rule.to_port is UNKNOWN:
            continue
        if _single_port(rule) != CONTROL_PLANE_PORT:
            found.append(
                (
                    rule.resource.urn,
                    f"{rule.resource.name} {rule.label}: control-plane egress allows {_ports(rule)}; "
                    f"only TCP {CONTROL_PLANE_PORT} is allowed",
                )
            )
    tagged = any(_role(r) == CONTROL_PLANE_EGRESS for r in resources)
    has_firewall = any(r.type == NETWORK_FIREWALL for r in resources)
    if not tagged and not has_firewall:
        # Without the tag this policy would pass vacuously, so a cluster must show its allowlist.
        found += [
            (
                r.urn,
                f"no security group or egress rule is tagged {ROLE_TAG}={CONTROL_PLANE_EGRESS} and the stack "
                "has no network firewall: the cluster's egress to the control plane cannot be checked",
            )
            for r in resources
            if r.type == EKS_CLUSTER
        ]
    return found


def unenforced_egress(resources: Sequence[Resource], *, dev: bool) -> list[tuple[str, str]]:
    """EKS clusters whose egress nothing enforces: no network firewall in the stack.

    A control-plane egress security group only adds allowed destinations: security groups are
    allow-lists that add up, and every node of a managed node group also carries the EKS cluster
    security group, which EKS creates with an allow-all egress rule
    (https://docs.aws.amazon.com/eks/latest/userguide/sec-group-reqs.html). So without the firewall a
    node can reach any address. `dev=False` reports clusters tagged staging/prod (anything but dev),
    `dev=True` those tagged dev.
    """
    if any(r.type == NETWORK_FIREWALL for r in resources):
        return []
    found: list[tuple[str, str]] = []
    for r in resources:
        if r.type != EKS_CLUSTER:
            continue
        tags = tags_of(r.props)
        environment = UNKNOWN if tags is UNKNOWN else tags.get("environment")
        if environment is UNKNOWN or (environment == "dev") != dev:
            continue
        found.append(
            (
                r.urn,
                f"{r.name}: egress is not enforced: without a network firewall every node can reach any "
                "address (nodes carry the EKS cluster security group, which allows all egress; security "
                "groups only add up). Use network.egress.mode 'network-firewall' or 'both'",
            )
        )
    return found


# --- Kubernetes checks (pure) ------------------------------------------------------------------

# Labels the program puts on its Kubernetes objects (`components/labels.py`; a test keeps them equal).
NAMESPACE_ROLE_LABEL = "langsmith-dataplane/namespace-role"
NAMESPACE_ROLES = frozenset({"agents", "listener"})
LISTENER_NAMESPACE_ROLE = "listener"
LISTENER_LABEL = "langsmith-dataplane/listener"
ENVIRONMENT_LABEL = "langsmith-dataplane/environment"

K8S_NAMESPACE = "kubernetes:core/v1:Namespace"
K8S_SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
K8S_NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
K8S_CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
K8S_CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
K8S_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
WORKLOADS = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_RESTRICTED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})


def _labels(props: Mapping[str, Any]) -> dict[str, Any] | Any:
    labels = lookup(props, "metadata", "labels")
    if labels is UNKNOWN:
        return UNKNOWN
    return {str(k): lookup(labels, str(k)) for k in list(labels)} if isinstance(labels, Mapping) else {}


def _container_violations(label: str, container: Any, pod_non_root: Any, pod_seccomp: Any) -> list[str]:
    context = lookup(container, "securityContext")
    if context is UNKNOWN:
        return []
    found = []
    if flag(lookup(context, "allowPrivilegeEscalation")) not in (False, UNKNOWN):
        found.append(f"{label}: allowPrivilegeEscalation must be false")
    if flag(lookup(context, "privileged")) is True:
        found.append(f"{label}: must not be privileged")
    if flag(lookup(context, "readOnlyRootFilesystem")) not in (True, UNKNOWN):
        found.append(f"{label}: readOnlyRootFilesystem must be true")
    drop = entries(lookup(context, "capabilities", "drop"))
    if drop is not UNKNOWN and "ALL" not in drop:
        found.append(f"{label}: capabilities must drop ALL")
    added = entries(lookup(context, "capabilities", "add"))
    if added is not UNKNOWN and [c for c in added if c is not UNKNOWN and c != "NET_BIND_SERVICE"]:
        found.append(f"{label}: may add no capability but NET_BIND_SERVICE (restricted profile)")
    non_root = flag(lookup(context, "runAsNonRoot"))
    if non_root is False or (non_root is None and pod_non_root is not True and pod_non_root is not UNKNOWN):
        found.append(f"{label}: runAsNonRoot must be true (on the pod or the container)")
    seccomp = plain(lookup(context, "seccompProfile", "type"))
    if seccomp is None:
        seccomp = pod_seccomp
    if seccomp is not UNKNOWN and seccomp not in _RESTRICTED_SECCOMP:
        found.append(f"{label}: seccompProfile must be RuntimeDefault (on the pod or the container)")
    return found


def restricted_workload_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every pod the program declares meets Pod Security `restricted`
    (kubernetes.io/docs/concepts/security/pod-security-standards) and, outside dev, runs images
    pinned by digest."""
    path = WORKLOADS.get(resource_type)
    if path is None:
        return []
    pod = lookup(props, *path)
    if pod is UNKNOWN or pod is None:
        return []
    found = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if flag(lookup(pod, key)) is True:
            found.append(f"pod: {key} must not be true")
    volumes = entries(lookup(pod, "volumes"))
    for volume in [] if volumes is UNKNOWN else volumes:
        if isinstance(volume, Mapping) and lookup(volume, "hostPath") is not None:
            found.append(f"pod: volume {lookup(volume, 'name')} is a hostPath")
    pod_non_root = flag(lookup(pod, "securityContext", "runAsNonRoot"))
    pod_seccomp = plain(lookup(pod, "securityContext", "seccompProfile", "type"))
    labels = _labels(props)
    environment = UNKNOWN if labels is UNKNOWN else labels.get(ENVIRONMENT_LABEL)
    for kind in ("initContainers", "containers"):
        containers = entries(lookup(pod, kind))
        for container in [] if containers is UNKNOWN else containers:
            if container is UNKNOWN:
                continue
            label = f"{kind} {lookup(container, 'name')}"
            found += _container_violations(label, container, pod_non_root, pod_seccomp)
            image = plain(lookup(container, "image"))
            pinned = not isinstance(image, str) or _DIGEST.search(image) is not None
            if environment != "dev" and environment is not UNKNOWN and not pinned:
                found.append(
                    f"{label}: image {image} must be pinned by digest (@sha256:...) outside dev "
                    f"(environment label: {environment or 'missing'})"
                )
    return found


def _subject_is(subject: Any, accounts: set[tuple[str, str]], namespaces: set[str]) -> bool:
    kind, name, namespace = (plain(lookup(subject, k)) for k in ("kind", "name", "namespace"))
    if kind == "ServiceAccount":
        return (namespace, name) in accounts or namespace in namespaces
    if kind == "Group":
        return name == "system:serviceaccounts" or any(
            name == f"system:serviceaccounts:{ns}" for ns in namespaces
        )
    if kind == "User" and isinstance(name, str) and name.startswith("system:serviceaccount:"):
        parts = name.split(":")
        return len(parts) == 4 and parts[2] in namespaces
    return False


def _labelled(resource: Resource) -> dict[str, Any]:
    labels = _labels(resource.props)
    return {} if labels is UNKNOWN else labels


def listener_cluster_rbac_violations(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    """The listener is granted nothing cluster-wide: no ClusterRole for it, no ClusterRoleBinding to
    it (or to every service account), and no RoleBinding lending it a ClusterRole."""
    namespaces = {
        str(lookup(r.props, "metadata", "name"))
        for r in resources
        if r.type == K8S_NAMESPACE and _labelled(r).get(NAMESPACE_ROLE_LABEL) == LISTENER_NAMESPACE_ROLE
    }
    accounts = {
        (str(lookup(r.props, "metadata", "namespace")), str(lookup(r.props, "metadata", "name")))
        for r in resources
        if r.type == K8S_SERVICE_ACCOUNT and LISTENER_LABEL in _labelled(r)
    }
    found = []
    for r in resources:
        subjects = entries(lookup(r.props, "subjects"))
        binds_listener = subjects is not UNKNOWN and any(
            _subject_is(s, accounts, namespaces) for s in subjects
        )
        if r.type == K8S_CLUSTER_ROLE and LISTENER_LABEL in _labelled(r):
            found.append((r.urn, f"{r.name}: a ClusterRole for the listener; give it namespaced Roles only"))
        elif r.type == K8S_CLUSTER_ROLE_BINDING and binds_listener:
            found.append((r.urn, f"{r.name}: a ClusterRoleBinding grants the listener cluster-wide rights"))
        elif (
            r.type == K8S_ROLE_BINDING
            and binds_listener
            and plain(lookup(r.props, "roleRef", "kind")) == "ClusterRole"
        ):
            found.append(
                (
                    r.urn,
                    f"{r.name}: binds the listener to a ClusterRole; bind a Role from listener.kube's rules",
                )
            )
    return found


def _is_default_deny(props: Mapping[str, Any]) -> bool | Any:
    spec = lookup(props, "spec")
    selector = lookup(spec, "podSelector")
    types = entries(lookup(spec, "policyTypes"))
    if UNKNOWN in (spec, selector) or types is UNKNOWN:
        return UNKNOWN
    selects_all = not lookup(selector, "matchLabels") and not lookup(selector, "matchExpressions")
    no_rules = not lookup(spec, "ingress") and not lookup(spec, "egress")
    return selects_all and no_rules and {"Ingress", "Egress"} <= set(types)


def default_deny_violations(resources: Sequence[Resource]) -> list[tuple[str, str]]:
    """Every namespace the program owns for agents or listeners denies all traffic by default (a
    NetworkPolicy selecting every pod, with both policy types and no rules)."""
    covered: set[str] = set()
    for r in resources:
        if r.type == K8S_NETWORK_POLICY and _is_default_deny(r.props) in (True, UNKNOWN):
            covered.add(str(lookup(r.props, "metadata", "namespace")))
    found = []
    for r in resources:
        role = _labelled(r).get(NAMESPACE_ROLE_LABEL)
        if r.type != K8S_NAMESPACE or role not in NAMESPACE_ROLES:
            continue
        name = lookup(r.props, "metadata", "name")
        if name is UNKNOWN or str(name) in covered:
            continue
        found.append(
            (
                r.urn,
                f"namespace {name} ({role}) has no default-deny NetworkPolicy "
                "(podSelector {}, policyTypes Ingress and Egress, no rules)",
            )
        )
    return found


# --- The Pulumi shell --------------------------------------------------------------------------

ResourceCheck = Callable[[str, Mapping[str, Any]], list[str]]
StackCheck = Callable[[Sequence[Resource]], list[tuple[str, str]]]


def _resource_policy(name: str, description: str, check: ResourceCheck) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for message in check(args.resource_type, args.props):
            report(message, None)

    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=PACK_ENFORCEMENT
    )


def _stack_policy(
    name: str, description: str, check: StackCheck, level: EnforcementLevel = PACK_ENFORCEMENT
) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = [
            Resource(
                type=r.resource_type,
                urn=r.urn,
                name=r.name,
                props=r.props,
                dependencies=tuple(d.urn for d in r.dependencies or ()),
                property_dependencies={
                    k: tuple(d.urn for d in v) for k, v in (r.property_dependencies or {}).items()
                },
            )
            for r in args.resources
        ]
        for urn, message in check(resources):
            report(message, urn)

    return StackValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=level
    )


def _validate_kubernetes_provider(args: ResourceValidationArgs, report: ReportViolation) -> None:
    provider = args.provider
    for message in kubernetes_provider_violations(args.resource_type, provider.name if provider else None):
        report(message, None)


POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [
    _stack_policy(
        "no-open-security-group-egress",
        "No security-group egress to 0.0.0.0/0 or ::/0, except TCP 80/443 rules tagged firewall-egress "
        "in a stack whose egress goes through the AWS Network Firewall.",
        open_egress_violations,
    ),
    _stack_policy(
        "control-plane-egress-https-only",
        "The control-plane egress security group allows TCP 443 only; a cluster without a network "
        "firewall must have one (tagged langsmith-dataplane/role=control-plane-egress).",
        control_plane_egress_violations,
    ),
    _stack_policy(
        "egress-enforced-outside-dev",
        "Outside dev, a cluster's egress is enforced by the AWS Network Firewall: security-group egress "
        "alone restricts nothing while nodes carry the EKS cluster security group.",
        functools.partial(unenforced_egress, dev=False),
    ),
    _stack_policy(
        "egress-not-enforced-in-dev",
        "A dev cluster without the network firewall can reach any address (a warning, not a failure).",
        functools.partial(unenforced_egress, dev=True),
        EnforcementLevel.ADVISORY,
    ),
    _resource_policy(
        "eks-endpoint-restricted",
        "A public EKS API endpoint needs publicAccessCidrs, none of them 0.0.0.0/0.",
        eks_endpoint_violations,
    ),
    _resource_policy(
        "rds-encrypted-and-private",
        "RDS storage is encrypted and the database is not publicly accessible.",
        rds_violations,
    ),
    _resource_policy(
        "elasticache-encrypted",
        "ElastiCache replication groups encrypt at rest and in transit.",
        elasticache_violations,
    ),
    _resource_policy(
        "deletion-protection-in-prod",
        "RDS databases, EKS clusters and network firewalls tagged environment=prod have deletion "
        "protection on.",
        deletion_protection_violations,
    ),
    _resource_policy(
        "required-tags",
        "Every taggable AWS resource carries the owner, cost-center and environment tags itself.",
        missing_tag_violations,
    ),
    _resource_policy(
        "restricted-pod-security",
        "Every workload the program declares meets Pod Security 'restricted' (non-root, no privilege "
        "escalation, all capabilities dropped, read-only root filesystem, RuntimeDefault seccomp, no host "
        "namespaces or hostPath) and, outside dev, runs images pinned by digest.",
        restricted_workload_violations,
    ),
    _stack_policy(
        "listener-namespaced-rbac-only",
        "The listener gets no ClusterRole, no ClusterRoleBinding and no RoleBinding to a ClusterRole: only "
        "Roles rendered from listener.kube's rules.",
        listener_cluster_rbac_violations,
    ),
    _stack_policy(
        "namespace-default-deny",
        "Every agent and listener namespace has a default-deny NetworkPolicy.",
        default_deny_violations,
    ),
    ResourceValidationPolicy(
        name="kubernetes-explicit-provider",
        description="Every Kubernetes resource uses an explicit provider, never the default one.",
        validate=_validate_kubernetes_provider,
        enforcement_level=PACK_ENFORCEMENT,
    ),
]
