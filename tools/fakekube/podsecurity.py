"""Pod Security admission (k8s.io/pod-security-admission): the baseline and restricted profiles.

A namespace labelled ``pod-security.kubernetes.io/enforce=restricted`` refuses pods that violate the
profile (``pods "x" is forbidden: violates PodSecurity "restricted:latest": ...``); workload objects
(Deployments, StatefulSets, ...) are only *warned* about (``would violate PodSecurity ...``), so the
failure shows up as the controller's pod creation failing, as on a real cluster. The ``warn`` label
adds the same warnings without enforcing.

Implemented checks (by their check IDs, which also order the message): allowPrivilegeEscalation,
capabilities_baseline, capabilities_restricted, hostNamespaces, hostPathVolumes, hostPorts,
privileged, restrictedVolumes, runAsNonRoot, runAsUser, seccompProfile_baseline,
seccompProfile_restricted. Not implemented: appArmorProfile, procMount, seLinuxOptions, sysctls,
windowsHostProcess (documented in README).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LEVELS = ("privileged", "baseline", "restricted")
_BASELINE_CAPS = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_VOLUME_TYPES = (
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd",
    "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
    "portworxVolume", "photonPersistentDisk", "scaleIO", "storageos", "image",
)  # fmt: skip


def level(namespace: Mapping[str, Any] | None, mode: str) -> str:
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    value = labels.get(f"pod-security.kubernetes.io/{mode}", "privileged")
    return value if value in LEVELS else "restricted"  # an invalid level is treated as restricted


def _containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        c for group in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(group) or []
    ]


def _names(items: list[str], noun: str) -> str:
    quoted = ", ".join(f'"{n}"' for n in items)
    return f"{noun} {quoted}" if len(items) == 1 else f"{noun}s {quoted}"


def violations(spec: Mapping[str, Any], profile: str) -> list[str]:
    """The ``<check> (<detail>)`` strings of ``spec`` under ``profile``, ordered like the real plugin."""
    if profile == "privileged":
        return []
    found: dict[str, str] = {}
    psc = spec.get("securityContext") or {}
    containers = _containers(spec)

    def sc(c: Mapping[str, Any]) -> Mapping[str, Any]:
        return c.get("securityContext") or {}

    hosts = [f"{f}=true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    if hosts:
        found["hostNamespaces"] = f"host namespaces ({', '.join(hosts)})"
    privileged = [c["name"] for c in containers if sc(c).get("privileged")]
    if privileged:
        found["privileged"] = (
            f"privileged ({_names(privileged, 'container')} must not set securityContext.privileged=true)"
        )
    bad_caps = [
        f"{_names([c['name']], 'container')} must not include {', '.join(chr(34) + a + chr(34) for a in added)} in securityContext.capabilities.add"
        for c in containers
        if (
            added := [
                a for a in (sc(c).get("capabilities") or {}).get("add") or [] if a not in _BASELINE_CAPS
            ]
        )
    ]
    if bad_caps:
        found["capabilities_baseline"] = f"non-default capabilities ({'; '.join(bad_caps)})"
    host_paths = [v["name"] for v in spec.get("volumes") or [] if v.get("hostPath") is not None]
    if host_paths:
        found["hostPathVolumes"] = f"hostPath volumes ({_names(host_paths, 'volume')})"
    host_ports = [
        f"{_names([c['name']], 'container')} uses hostPort {p['hostPort']}"
        for c in containers
        for p in c.get("ports") or []
        if p.get("hostPort")
    ]
    if host_ports:
        found["hostPorts"] = f"hostPort ({'; '.join(host_ports)})"
    if (psc.get("seccompProfile") or {}).get("type") == "Unconfined":
        found["seccompProfile_baseline"] = (
            'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'
        )
    if profile == "restricted":
        _restricted(spec, psc, containers, sc, found)
    return [found[k] for k in sorted(found)]


def _restricted(
    spec: Mapping[str, Any],
    psc: Mapping[str, Any],
    containers: list[Mapping[str, Any]],
    sc: Any,
    found: dict[str, str],
) -> None:
    vols = []
    for v in spec.get("volumes") or []:
        vtype = next((t for t in _VOLUME_TYPES if v.get(t) is not None), None)
        if vtype and vtype not in _RESTRICTED_VOLUMES:
            vols.append(f'volume "{v["name"]}" uses restricted volume type "{vtype}"')
    if vols:
        found["restrictedVolumes"] = f"restricted volume types ({'; '.join(vols)})"
    escalate = [c["name"] for c in containers if sc(c).get("allowPrivilegeEscalation") is not False]
    if escalate:
        found["allowPrivilegeEscalation"] = (
            f"allowPrivilegeEscalation != false ({_names(escalate, 'container')} must set "
            "securityContext.allowPrivilegeEscalation=false)"
        )
    caps = []
    no_drop = [
        c["name"] for c in containers if "ALL" not in ((sc(c).get("capabilities") or {}).get("drop") or [])
    ]
    if no_drop:
        caps.append(f'{_names(no_drop, "container")} must set securityContext.capabilities.drop=["ALL"]')
    for c in containers:
        added = [a for a in (sc(c).get("capabilities") or {}).get("add") or [] if a != "NET_BIND_SERVICE"]
        if added:
            caps.append(
                f"{_names([c['name']], 'container')} must not include {', '.join(chr(34) + a + chr(34) for a in added)} in securityContext.capabilities.add"
            )
    if caps:
        found["capabilities_restricted"] = f"unrestricted capabilities ({'; '.join(caps)})"
    pod_non_root = psc.get("runAsNonRoot")
    explicit_false = [c["name"] for c in containers if sc(c).get("runAsNonRoot") is False]
    unset = [c["name"] for c in containers if sc(c).get("runAsNonRoot") is None]
    if pod_non_root is False:
        found["runAsNonRoot"] = "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)"
    elif explicit_false:
        found["runAsNonRoot"] = (
            f"runAsNonRoot != true ({_names(explicit_false, 'container')} must not set securityContext.runAsNonRoot=false)"
        )
    elif pod_non_root is not True and unset:
        found["runAsNonRoot"] = (
            f"runAsNonRoot != true (pod or {_names(unset, 'container')} must set securityContext.runAsNonRoot=true)"
        )
    root = []
    if psc.get("runAsUser") == 0:
        root.append("pod must not set runAsUser=0")
    zero = [c["name"] for c in containers if sc(c).get("runAsUser") == 0]
    if zero:
        root.append(f"{_names(zero, 'container')} must not set runAsUser=0")
    if root:
        found["runAsUser"] = f"runAsUser=0 ({'; '.join(root)})"
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    ok = ("RuntimeDefault", "Localhost")
    bad = [
        c["name"] for c in containers if (sc(c).get("seccompProfile") or {}).get("type") not in (*ok, None)
    ]
    missing = [c["name"] for c in containers if (sc(c).get("seccompProfile") or {}).get("type") is None]
    if bad:
        found["seccompProfile_restricted"] = (
            f'seccompProfile ({_names(bad, "container")} must not set securityContext.seccompProfile.type to "Unconfined")'
        )
    elif pod_seccomp not in ok and missing:
        found["seccompProfile_restricted"] = (
            f"seccompProfile (pod or {_names(missing, 'container')} must set securityContext.seccompProfile.type to "
            '"RuntimeDefault" or "Localhost")'
        )


def describe(profile: str, found: list[str]) -> str:
    return f'PodSecurity "{profile}:latest": ' + ", ".join(found)
