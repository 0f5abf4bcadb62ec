"""Hardened pod building blocks shared by the Agent Server and the stores."""

from __future__ import annotations

from typing import Any

TMP_VOLUME = "ls-tmp"
"""Prefixed so it can't clash with a user volume named `tmp`."""


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }


def pod_security_context(run_as_non_root: bool, uid: int | None = None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"runAsNonRoot": run_as_non_root, "seccompProfile": {"type": "RuntimeDefault"}}
    if uid is not None:
        # The official postgres/redis images run as uid 999 when started non-root; fsGroup makes the
        # data volume writable for that user.
        ctx.update(runAsUser=uid, runAsGroup=uid, fsGroup=uid)
    return ctx


def empty_dir(name: str, size_limit: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"sizeLimit": size_limit} if size_limit else {}
    return {"name": name, "emptyDir": spec}


def zone_spread(selector: dict[str, str]) -> list[dict[str, Any]]:
    """Soft spread across zones (ScheduleAnyway) so single-zone clusters still schedule; only the
    current ReplicaSet's pods are counted (matchLabelKeys) so a rollout doesn't skew the spread."""
    return [
        {
            "labelSelector": {"matchLabels": dict(selector)},
            "matchLabelKeys": ["pod-template-hash"],
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
        }
    ]


def http_probe(path: str, port: str, *, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }
