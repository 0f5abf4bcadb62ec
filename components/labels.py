"""Labels the program puts on the Kubernetes objects it declares (the policy pack reads them too).

`policy/policies.py` must import nothing from the program, so it repeats the keys it needs; a test
keeps the two in step.
"""

from __future__ import annotations

from typing import Final

PART_OF: Final = "langsmith-dataplane"
MANAGED_BY: Final = "pulumi"

NAMESPACE_ROLE: Final = "langsmith-dataplane/namespace-role"
"""On our namespaces: `agents` (watched by listeners, Agent Servers run there) or `listener`."""
AGENTS: Final = "agents"
LISTENER: Final = "listener"

ENVIRONMENT: Final = "langsmith-dataplane/environment"
"""The stack's environment on every object: the policy pack relaxes image pinning only for `dev`."""

LISTENER_NAME: Final = "langsmith-dataplane/listener"
"""On a listener's own objects: the listener's name in the stack's topology."""

WATCHED_BY_PREFIX: Final = "listeners.langsmith-dataplane/"
"""`listeners.langsmith-dataplane/<listener>: watching` on an agent namespace, once per listener."""
WATCHING: Final = "watching"


def common(environment: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": PART_OF,
        ENVIRONMENT: environment,
    }


def pod_security(level: str, kubernetes_version: str) -> dict[str, str]:
    """Pod Security Admission: enforce, audit and warn at `level`, pinned to the cluster's version (`1.NN`)
    so an upgrade never changes what is enforced unannounced, or `latest`
    (kubernetes.io/docs/concepts/security/pod-security-admission)."""
    version = kubernetes_version if kubernetes_version == "latest" else f"v{kubernetes_version}"
    labels = {}
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = level
        labels[f"pod-security.kubernetes.io/{mode}-version"] = version
    return labels
