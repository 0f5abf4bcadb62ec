"""Authentication (bearer tokens) and RBAC authorisation, as the API server does them.

* ``request_attributes`` parses a URL the way staging/src/k8s.io/apiserver/pkg/endpoints/request/
  requestinfo.go does: resource vs non-resource requests, ``GET /api/v1/namespaces/x`` is in the
  namespace ``x``, ``/status`` and ``/scale`` are subresources, ``PATCH`` of any type is ``patch``.
* ``rule_allows`` / ``Authorizer`` port plugin/pkg/auth/authorizer/rbac/rbac.go and the rule
  resolution of pkg/registry/rbac/validation/rule.go: ClusterRoleBindings apply everywhere,
  RoleBindings only in their namespace, a ServiceAccount subject without a namespace means the
  binding's own, a binding to a missing role adds an ``RBAC: role... not found`` reason.
* The ``system:masters`` group bypasses RBAC, as the API server's privileged-group authorizer does;
  fakekube's admin identity is in it.
* ``covers`` ports the escalation check (k8s.io/component-helpers/auth/rbac/validation): creating a
  Role or binding to one requires holding its permissions (or the ``escalate``/``bind`` verbs).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SA_PREFIX = "system:serviceaccount:"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
RBAC_GROUP = "rbac.authorization.k8s.io"

# Parts of a namespace URL that are subresources of the Namespace, not resources in it.
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_READ_VERBS = {"GET": "get", "HEAD": "get"}


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def service_account(self) -> tuple[str, str] | None:
        if not self.name.startswith(SA_PREFIX):
            return None
        ns, _, name = self.name[len(SA_PREFIX) :].partition(":")
        return ns, name


def service_account_user(namespace: str, name: str) -> UserInfo:
    return UserInfo(
        f"{SA_PREFIX}{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
    )


@dataclass(frozen=True)
class Attributes:
    user: UserInfo
    verb: str
    resource_request: bool
    path: str
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    # requestinfo.go: a list/watch with fieldSelector metadata.name=x is authorised as if named x
    # (the request itself stays a list).
    selected_name: str = ""

    @property
    def authz_name(self) -> str:
        return self.name or self.selected_name


def request_attributes(method: str, path: str, query: Mapping[str, str], user: UserInfo) -> Attributes:
    """RequestInfoFactory.NewRequestInfo, reduced to what authorisation needs."""
    parts = [p for p in path.split("/") if p]
    non_resource = Attributes(user, _READ_VERBS.get(method, method.lower()), False, path)
    if not parts or parts[0] not in ("api", "apis"):
        return non_resource
    rest = parts[1:]
    if parts[0] == "apis":
        if len(rest) < 3:
            return non_resource
        group, version, rest = rest[0], rest[1], rest[2:]
    else:
        if len(rest) < 2:
            return non_resource
        group, version, rest = "", rest[0], rest[1:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    selected = ""
    if method in ("GET", "HEAD"):
        verb = "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list")
        if not name and not subresource:
            # A list/watch of one object by field selector carries its name (resourceNames rules apply).
            selected = _exact_name(query.get("fieldSelector") or "")
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = method.lower()
    return Attributes(
        user, verb, True, path, group, version, resource, subresource, namespace, name, selected
    )


def _exact_name(selector: str) -> str:
    """fields.Selector.RequiresExactMatch("metadata.name"), if the name is a valid path segment."""
    for term in selector.split(","):
        for op in ("==", "="):
            key, sep, value = term.partition(op)
            if sep and key.strip() == "metadata.name" and "!" not in key:
                value = value.strip()
                ok = value not in (".", "..") and "/" not in value and "%" not in value
                return value if ok else ""
    return ""


# ---------------------------------------------------------------- rule matching (rbac/v1 helpers)


def _verb_matches(rule: Mapping[str, Any], verb: str) -> bool:
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def _group_matches(rule: Mapping[str, Any], group: str) -> bool:
    groups = rule.get("apiGroups") or []
    return "*" in groups or group in groups


def _resource_matches(rule: Mapping[str, Any], combined: str, subresource: str) -> bool:
    for r in rule.get("resources") or []:
        if r in ("*", combined):
            return True
        if subresource and r == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: Mapping[str, Any], name: str) -> bool:
    names = rule.get("resourceNames") or []
    return not names or name in names


def _url_matches(rule: Mapping[str, Any], path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def rule_allows(attrs: Attributes, rule: Mapping[str, Any]) -> bool:
    if attrs.resource_request:
        combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        return (
            _verb_matches(rule, attrs.verb)
            and _group_matches(rule, attrs.api_group)
            and _resource_matches(rule, combined, attrs.subresource)
            and _name_matches(rule, attrs.authz_name)
        )
    return _verb_matches(rule, attrs.verb) and _url_matches(rule, attrs.path)


def applies_to(user: UserInfo, subject: Mapping[str, Any], namespace: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return user.name == subject.get("name")
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        sa_ns = subject.get("namespace") or namespace
        return bool(sa_ns) and user.name == f"{SA_PREFIX}{sa_ns}:{subject.get('name')}"
    return False


class RbacSource:
    """What the authorizer reads: the RBAC objects stored in the fake (implemented by the store)."""

    def cluster_role_bindings(self) -> Iterable[Mapping[str, Any]]: ...
    def role_bindings(self, namespace: str) -> Iterable[Mapping[str, Any]]: ...
    def cluster_role(self, name: str) -> Mapping[str, Any] | None: ...
    def role(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    def rbac_revision(self) -> int: ...


def _role_rules(src: RbacSource, ref: Mapping[str, Any], namespace: str) -> tuple[list[Any], str | None]:
    kind, name = ref.get("kind"), ref.get("name") or ""
    if kind == "Role":
        role = src.role(namespace, name)
        if role is None:
            return [], f'role.rbac.authorization.k8s.io "{name}" not found'
        return list(role.get("rules") or []), None
    if kind == "ClusterRole":
        role = src.cluster_role(name)
        if role is None:
            return [], f'clusterrole.rbac.authorization.k8s.io "{name}" not found'
        return list(role.get("rules") or []), None
    return [], f'unsupported role reference kind: "{kind}"'


def rules_for(src: RbacSource, user: UserInfo, namespace: str) -> tuple[list[Mapping[str, Any]], list[str]]:
    """DefaultRuleResolver.RulesFor: every rule that applies to ``user`` in ``namespace``."""
    rules: list[Mapping[str, Any]] = []
    errs: list[str] = []
    for binding in src.cluster_role_bindings():
        if any(applies_to(user, s, "") for s in binding.get("subjects") or []):
            found, err = _role_rules(src, binding.get("roleRef") or {}, "")
            rules += found
            if err:
                errs.append(err)
    if namespace:
        for binding in src.role_bindings(namespace):
            if any(applies_to(user, s, namespace) for s in binding.get("subjects") or []):
                found, err = _role_rules(src, binding.get("roleRef") or {}, namespace)
                rules += found
                if err:
                    errs.append(err)
    return rules, errs


@dataclass(frozen=True)
class Resolved:
    """The rules that apply to a user in a namespace (rbac.go's RulesFor), at one RBAC revision."""

    rules: list[Mapping[str, Any]]
    errors: list[str]
    uses_names: bool  # some rule lists resourceNames: decisions then depend on the object's name


@dataclass
class Authorizer:
    """RBAC with resolved rules and decisions cached until an RBAC object changes."""

    source: RbacSource
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rev: int = -1
    _resolved: dict[tuple[UserInfo, str], Resolved] = field(default_factory=dict)
    _decisions: dict[tuple[Any, ...], tuple[bool, str]] = field(default_factory=dict)

    def _cached(self, rev: int, table: str, key: Any) -> Any:
        with self._lock:
            if rev != self._rev:
                self._resolved = {}
                self._decisions = {}
                self._rev = rev
            return getattr(self, table).get(key)

    def _remember(self, rev: int, table: str, key: Any, value: Any) -> None:
        with self._lock:
            cache = getattr(self, table)
            # Only while nothing changed since the revision the value was computed at.
            if rev == self._rev == self.source.rbac_revision() and len(cache) < 50_000:
                cache[key] = value

    def rules(self, user: UserInfo, namespace: str) -> Resolved:
        rev = self.source.rbac_revision()
        hit = self._cached(rev, "_resolved", (user, namespace))
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        rules, errs = rules_for(self.source, user, namespace)
        resolved = Resolved(rules, errs, any(r.get("resourceNames") for r in rules))
        self._remember(rev, "_resolved", (user, namespace), resolved)
        return resolved

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason): the reason is the RBAC resolution errors of a denial, as in rbac.go."""
        if MASTERS in attrs.user.groups:
            return True, ""
        rev = self.source.rbac_revision()
        resolved = self.rules(attrs.user, attrs.namespace)
        key = (
            attrs.user,
            attrs.namespace,
            attrs.verb,
            attrs.api_group,
            attrs.resource,
            attrs.subresource,
            attrs.authz_name if resolved.uses_names else "",
            "" if attrs.resource_request else attrs.path,
        )
        hit = self._cached(rev, "_decisions", key)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        if any(rule_allows(attrs, r) for r in resolved.rules):
            result = (True, "")
        else:
            result = (False, ("RBAC: " + _aggregate(resolved.errors)) if resolved.errors else "")
        self._remember(rev, "_decisions", key, result)
        return result


def _aggregate(errs: list[str]) -> str:
    return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"


def forbidden_reason(attrs: Attributes, reason: str) -> str:
    """forbiddenMessage() of the API server's responsewriters, plus the authorizer's reason."""
    user = attrs.user.name
    if not attrs.resource_request:
        msg = f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
        msg = f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" {scope}'
    return f"{msg}: {reason}" if reason else msg


# ---------------------------------------------------------------- escalation (Covers)


def _expand(rule: Mapping[str, Any]) -> Iterable[tuple[str, str, str, str]]:
    if rule.get("nonResourceURLs"):
        for verb in rule.get("verbs") or []:
            for url in rule["nonResourceURLs"]:
                yield ("#url", url, verb, "")
        return
    names = rule.get("resourceNames") or [""]
    for group in rule.get("apiGroups") or []:
        for resource in rule.get("resources") or []:
            for verb in rule.get("verbs") or []:
                for name in names:
                    yield (group, resource, verb, name)


def _covered(owner: Mapping[str, Any], atom: tuple[str, str, str, str]) -> bool:
    group, resource, verb, name = atom
    if group == "#url":
        urls = owner.get("nonResourceURLs") or []
        verbs = owner.get("verbs") or []
        return ("*" in verbs or verb in verbs) and any(
            u == "*" or u == resource or (u.endswith("*") and resource.startswith(u[:-1])) for u in urls
        )
    if owner.get("nonResourceURLs"):
        return False
    verbs, groups, resources = (
        owner.get("verbs") or [],
        owner.get("apiGroups") or [],
        owner.get("resources") or [],
    )
    if not ("*" in verbs or verb in verbs) or not ("*" in groups or group in groups):
        return False
    sub = resource.partition("/")[2]
    if not ("*" in resources or resource in resources or (sub and f"*/{sub}" in resources)) and not (
        resource.endswith("/*") and any(r.startswith(resource[:-1]) for r in resources)
    ):
        return False
    owner_names = owner.get("resourceNames") or []
    return not owner_names or (bool(name) and name in owner_names)


def covers(
    owner_rules: list[Mapping[str, Any]], servant_rules: Iterable[Mapping[str, Any]]
) -> list[tuple[str, str, str, str]]:
    """The atoms of ``servant_rules`` that ``owner_rules`` do not grant (empty when covered)."""
    missing = []
    for rule in servant_rules:
        for atom in _expand(rule):
            if not any(_covered(o, atom) for o in owner_rules):
                missing.append(atom)
    return missing


def describe_missing(missing: list[tuple[str, str, str, str]]) -> str:
    """rbacv1helpers.CompactString-style lines, one per missing permission."""
    lines = set()
    for group, resource, verb, name in missing:
        if group == "#url":
            lines.add(f'{{NonResourceURLs:["{resource}"], Verbs:["{verb}"]}}')
        elif name:
            lines.add(
                f'{{APIGroups:["{group}"], Resources:["{resource}"], ResourceNames:["{name}"], Verbs:["{verb}"]}}'
            )
        else:
            lines.add(f'{{APIGroups:["{group}"], Resources:["{resource}"], Verbs:["{verb}"]}}')
    return "\n".join(sorted(lines))


# ---------------------------------------------------------------- tokens


class Tokens:
    """Bearer token -> identity. ServiceAccount tokens stay valid only while their ServiceAccount
    (same uid) exists, like bound service account tokens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._static: dict[str, UserInfo] = {}
        self._sa: dict[str, tuple[str, str, str]] = {}  # token -> (namespace, name, uid)

    def add_user(self, user: UserInfo, token: str | None = None) -> str:
        token = token or f"fakekube-user-{secrets.token_hex(12)}"
        with self._lock:
            self._static[token] = user
        return token

    def add_service_account(self, namespace: str, name: str, uid: str) -> str:
        token = f"fakekube-sa-{secrets.token_hex(16)}"
        with self._lock:
            self._sa[token] = (namespace, name, uid)
        return token

    def lookup(self, token: str) -> tuple[UserInfo | None, tuple[str, str, str] | None]:
        with self._lock:
            return self._static.get(token), self._sa.get(token)


def bootstrap_policy() -> list[dict[str, Any]]:
    """The bootstrap ClusterRoles/Bindings every API server creates (plugin/pkg/auth/authorizer/rbac/
    bootstrappolicy), reduced to the ones that matter for these tests."""
    meta = {
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
    }

    def role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, **meta},
            "rules": rules,
        }

    def binding(name: str, role_name: str, groups: list[str]) -> dict[str, Any]:
        return {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, **meta},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role_name},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups],
        }

    discovery_urls = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
                      "/readyz", "/version", "/version/"]  # fmt: skip
    public_urls = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
    return [
        role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        binding("cluster-admin", "cluster-admin", [MASTERS]),
        role("system:discovery", [{"nonResourceURLs": discovery_urls, "verbs": ["get"]}]),
        binding("system:discovery", "system:discovery", [AUTHENTICATED]),
        role("system:public-info-viewer", [{"nonResourceURLs": public_urls, "verbs": ["get"]}]),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            [AUTHENTICATED, "system:unauthenticated"],
        ),
        role(
            "system:basic-user",
            [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["selfsubjectreviews"],
                    "verbs": ["create"],
                },
            ],
        ),
        binding("system:basic-user", "system:basic-user", [AUTHENTICATED]),
    ]
