"""Pod specs and pod templates: a port of the parts of pkg/apis/core/validation/validation.go that
workloads trip over (ValidatePodSpec, validateContainers, ValidateVolumes, ValidateEnv,
validateContainerPorts, ValidateVolumeMounts, validateResourceRequirements, validateProbe, ...).

``pod=True`` adds the pod-only checks (validateContainersOnlyForPod): an image with leading or
trailing whitespace is accepted in a Deployment's template but refused when the ReplicaSet
controller creates the pod, exactly as on a real cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tools.fakekube import formats as fmt
from tools.fakekube import quantity
from tools.fakekube.errors import (
    FieldError,
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_not_found,
    field_not_supported,
    field_required,
)
from tools.fakekube.validation.meta import (
    annotations,
    child,
    index,
    key,
    label_name,
    label_selector,
    labels,
    non_negative,
)

_VOLUME_SOURCES = (
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
)
_FILE_MODE = "must be a number between 0 and 0777 (octal), both inclusive"
_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_ENV_FIELD_PATHS = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
]
_RESOURCE_FIELD_PATHS = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
]


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _list(v: Any) -> list[Any]:
    return [x for x in v if isinstance(x, Mapping)] if isinstance(v, list) else []


def pod_template(template: Any, path: str, *, validate_spec: bool = True) -> list[FieldError]:
    """ValidatePodTemplateSpec."""
    if not isinstance(template, Mapping):
        return [field_required(path)]
    meta = template.get("metadata") or {}
    out = labels(meta.get("labels"), child(path, "labels"))
    out += annotations(meta.get("annotations"), child(path, "annotations"))
    spec = template.get("spec") or {}
    if validate_spec:
        out += pod_spec(spec, child(path, "spec"))
        if spec.get("ephemeralContainers"):
            out.append(
                field_forbidden(
                    child(child(path, "spec"), "ephemeralContainers"),
                    "ephemeral containers not allowed in pod template",
                )
            )
    return out


def pod_spec(spec: Mapping[str, Any], path: str, *, pod: bool = False) -> list[FieldError]:
    out: list[FieldError] = []
    if spec.get("terminationGracePeriodSeconds") is None:
        out.append(field_required(child(path, "terminationGracePeriodSeconds")))
    volumes, verrs = _volumes(spec.get("volumes"), child(path, "volumes"))
    out += verrs
    out += _containers(spec.get("containers"), volumes, child(path, "containers"), spec)
    out += _init_containers(
        spec.get("initContainers"), spec.get("containers"), volumes, child(path, "initContainers")
    )
    restart = spec.get("restartPolicy")
    if not restart:
        out.append(field_required(child(path, "restartPolicy")))
    elif restart not in ("Always", "OnFailure", "Never"):
        out.append(
            field_not_supported(child(path, "restartPolicy"), restart, ["Always", "OnFailure", "Never"])
        )
    dns = spec.get("dnsPolicy")
    dns_values = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
    if not dns:
        out.append(field_required(child(path, "dnsPolicy")))
    elif dns not in dns_values:
        out.append(field_not_supported(child(path, "dnsPolicy"), dns, dns_values))
    out += labels(spec.get("nodeSelector"), child(path, "nodeSelector"))
    out += _pod_security_context(spec.get("securityContext"), child(path, "securityContext"))
    for i, ref in enumerate(spec.get("imagePullSecrets") or []):
        if isinstance(ref, Mapping) and set(ref) - {"name"}:
            out.append(field_invalid(index(child(path, "imagePullSecrets"), i), ref, "only name may be set"))
    for f, fn in (("serviceAccountName", fmt.name_is_dns_subdomain), ("nodeName", fmt.name_is_dns_subdomain),
                  ("priorityClassName", fmt.name_is_dns_subdomain)):  # fmt: skip
        value = _str(spec.get(f))
        if value:
            out += [field_invalid(child(path, f), value, m) for m in fn(value)]
    for f in ("hostname", "subdomain"):
        value = _str(spec.get(f))
        if value:
            out += [field_invalid(child(path, f), value, m) for m in fmt.is_dns1123_label(value)]
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and not 1 <= deadline <= 2**31 - 1:
        out.append(
            field_invalid(
                child(path, "activeDeadlineSeconds"), deadline, fmt.inclusive_range_error(1, 2**31 - 1)
            )
        )
    out += _tolerations(spec.get("tolerations"), child(path, "tolerations"))
    for i, alias in enumerate(_list(spec.get("hostAliases"))):
        p = index(child(path, "hostAliases"), i)
        out += [
            field_invalid(child(p, "ip"), alias.get("ip"), m) for m in fmt.is_valid_ip(_str(alias.get("ip")))
        ]
    out += _topology_spread(spec.get("topologySpreadConstraints"), child(path, "topologySpreadConstraints"))
    if pod:
        for group in ("containers", "initContainers"):
            for i, c in enumerate(_list(spec.get(group))):
                image = _str(c.get("image"))
                if image != image.strip():
                    out.append(
                        field_invalid(
                            child(index(child(path, group), i), "image"),
                            image,
                            "must not have leading or trailing whitespace",
                        )
                    )
    return out


def _volumes(vols: Any, path: str) -> tuple[dict[str, Mapping[str, Any]], list[FieldError]]:
    out: list[FieldError] = []
    named: dict[str, Mapping[str, Any]] = {}
    for i, vol in enumerate(_list(vols)):
        p = index(path, i)
        errs: list[FieldError] = []
        name = _str(vol.get("name"))
        sources = [s for s in _VOLUME_SOURCES if vol.get(s) is not None]
        for extra in sources[1:]:
            errs.append(field_forbidden(child(p, extra), "may not specify more than 1 volume type"))
        if not sources:
            errs.append(field_required(p, "must specify a volume type"))
        else:
            errs += _volume_source(sources[0], vol[sources[0]], child(p, sources[0]))
        if not name:
            errs.append(field_required(child(p, "name")))
        else:
            errs += [field_invalid(child(p, "name"), name, m) for m in fmt.is_dns1123_label(name)]
        if name in named:
            errs.append(field_duplicate(child(p, "name"), name))
        if not errs:
            named[name] = vol
        out += errs
    return named, out


def _volume_source(source: str, spec: Any, path: str) -> list[FieldError]:
    spec = spec if isinstance(spec, Mapping) else {}
    out: list[FieldError] = []
    if source == "secret":
        if not _str(spec.get("secretName")):
            out.append(field_required(child(path, "secretName")))
        out += _mode(spec.get("defaultMode"), child(path, "defaultMode"))
        out += _items(spec.get("items"), child(path, "items"))
    elif source == "configMap":
        if not _str(spec.get("name")):
            out.append(field_required(child(path, "name")))
        out += _mode(spec.get("defaultMode"), child(path, "defaultMode"))
        out += _items(spec.get("items"), child(path, "items"))
    elif source == "persistentVolumeClaim":
        if not _str(spec.get("claimName")):
            out.append(field_required(child(path, "claimName")))
    elif source == "emptyDir":
        size = spec.get("sizeLimit")
        if size is not None and quantity.parse(size).value < 0:
            out.append(
                field_forbidden(child(path, "sizeLimit"), "SizeLimit field must be a valid resource quantity")
            )
    elif source == "hostPath":
        if not _str(spec.get("path")):
            out.append(field_required(child(path, "path")))
        elif ".." in _str(spec.get("path")).split("/"):
            out.append(field_invalid(child(path, "path"), spec.get("path"), "must not contain '..'"))
    elif source in ("projected", "downwardAPI"):
        out += _mode(spec.get("defaultMode"), child(path, "defaultMode"))
    return out


def _mode(mode: Any, path: str) -> list[FieldError]:
    if isinstance(mode, int) and not 0 <= mode <= 0o777:
        return [field_invalid(path, mode, _FILE_MODE)]
    return []


def _items(items: Any, path: str) -> list[FieldError]:
    out = []
    for i, kp in enumerate(_list(items)):
        p = index(path, i)
        if not _str(kp.get("key")):
            out.append(field_required(child(p, "key")))
        target = _str(kp.get("path"))
        if not target:
            out.append(field_required(child(p, "path")))
        out += _local_path(target, child(p, "path"))
        out += _mode(kp.get("mode"), child(p, "mode"))
    return out


def _local_path(target: str, path: str) -> list[FieldError]:
    """ValidateLocalNonReservedPath."""
    out = []
    if target.startswith("/"):
        out.append(field_invalid(path, target, "must be a relative path"))
    if ".." in target.split("/"):
        out.append(field_invalid(path, target, "must not contain '..'"))
    elif target.startswith(".."):
        out.append(field_invalid(path, target, "must not start with '..'"))
    return out


def _containers(
    containers: Any, volumes: Mapping[str, Any], path: str, spec: Mapping[str, Any]
) -> list[FieldError]:
    items = _list(containers)
    if not items:
        return [field_required(path)]
    out: list[FieldError] = []
    names: set[str] = set()
    port_names: set[str] = set()
    for i, c in enumerate(items):
        p = index(path, i)
        out += _container_common(c, volumes, p, port_names)
        name = _str(c.get("name"))
        if name in names:
            out.append(field_duplicate(child(p, "name"), name))
        names.add(name)
        out += _probe(c.get("livenessProbe"), child(p, "livenessProbe"), success_is_one=True)
        out += _probe(c.get("readinessProbe"), child(p, "readinessProbe"), readiness=True)
        out += _probe(c.get("startupProbe"), child(p, "startupProbe"), success_is_one=True)
        lifecycle = c.get("lifecycle")
        if isinstance(lifecycle, Mapping):
            for hook in ("postStart", "preStop"):
                if lifecycle.get(hook) is not None:
                    out += _handler(lifecycle[hook], child(child(p, "lifecycle"), hook))
        if c.get("restartPolicy") is not None:
            out.append(field_forbidden(child(p, "restartPolicy"), "may not be set for non-init containers"))
    out += _host_ports(items, path)
    del spec
    return out


def _init_containers(
    containers: Any, regular: Any, volumes: Mapping[str, Any], path: str
) -> list[FieldError]:
    out: list[FieldError] = []
    names = {_str(c.get("name")) for c in _list(regular)}
    port_names: set[str] = set()
    for i, c in enumerate(_list(containers)):
        p = index(path, i)
        out += _container_common(c, volumes, p, port_names)
        name = _str(c.get("name"))
        if name in names:
            out.append(field_duplicate(child(p, "name"), name))
        elif name:
            names.add(name)
        restart = c.get("restartPolicy")
        if restart is not None and restart != "Always":
            out.append(field_not_supported(child(p, "restartPolicy"), restart, ["Always"]))
        if restart != "Always":
            for f in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(f) is not None:
                    out.append(
                        field_forbidden(
                            child(p, f), "may not be set for init containers without restartPolicy=Always"
                        )
                    )
    return out


def _container_common(
    c: Mapping[str, Any], volumes: Mapping[str, Any], path: str, port_names: set[str]
) -> list[FieldError]:
    out: list[FieldError] = []
    name = _str(c.get("name"))
    if not name:
        out.append(field_required(child(path, "name")))
    else:
        out += [field_invalid(child(path, "name"), name, m) for m in fmt.is_dns1123_label(name)]
    if not _str(c.get("image")):
        out.append(field_required(child(path, "image")))
    policy = c.get("terminationMessagePolicy")
    if not policy:
        out.append(field_required(child(path, "terminationMessagePolicy")))
    elif policy not in ("File", "FallbackToLogsOnError"):
        out.append(
            field_not_supported(
                child(path, "terminationMessagePolicy"), policy, ["File", "FallbackToLogsOnError"]
            )
        )
    out += _ports(c.get("ports"), child(path, "ports"), port_names)
    out += _env(c.get("env"), child(path, "env"))
    out += _env_from(c.get("envFrom"), child(path, "envFrom"))
    out += _mounts(c.get("volumeMounts"), volumes, child(path, "volumeMounts"))
    pull = c.get("imagePullPolicy")
    if not pull:
        out.append(field_required(child(path, "imagePullPolicy")))
    elif pull not in _PULL_POLICIES:
        out.append(field_not_supported(child(path, "imagePullPolicy"), pull, _PULL_POLICIES))
    out += resources(c.get("resources"), child(path, "resources"))
    out += _security_context(c.get("securityContext"), child(path, "securityContext"))
    return out


def _ports(ports: Any, path: str, names: set[str]) -> list[FieldError]:
    out: list[FieldError] = []
    for i, port in enumerate(_list(ports)):
        p = index(path, i)
        name = _str(port.get("name"))
        if name:
            msgs = fmt.is_valid_port_name(name)
            if msgs:
                out += [field_invalid(child(p, "name"), name, m) for m in msgs]
            elif name in names:
                out.append(field_duplicate(child(p, "name"), name))
            else:
                names.add(name)
        number = port.get("containerPort")
        if not number:
            out.append(field_required(child(p, "containerPort")))
        else:
            out += [
                field_invalid(child(p, "containerPort"), number, m) for m in fmt.is_valid_port_num(number)
            ]
        host = port.get("hostPort")
        if host:
            out += [field_invalid(child(p, "hostPort"), host, m) for m in fmt.is_valid_port_num(host)]
        protocol = port.get("protocol")
        if not protocol:
            out.append(field_required(child(p, "protocol")))
        elif protocol not in _PROTOCOLS:
            out.append(field_not_supported(child(p, "protocol"), protocol, _PROTOCOLS))
    return out


def _host_ports(containers: list[Mapping[str, Any]], path: str) -> list[FieldError]:
    seen: set[str] = set()
    out = []
    for ci, c in enumerate(containers):
        for pi, port in enumerate(_list(c.get("ports"))):
            if not port.get("hostPort"):
                continue
            sig = f"{port.get('protocol')}/{port.get('hostIP', '')}/{port['hostPort']}"
            if sig in seen:
                out.append(
                    field_duplicate(child(index(child(index(path, ci), "ports"), pi), "hostPort"), sig)
                )
            seen.add(sig)
    return out


def _env(env: Any, path: str) -> list[FieldError]:
    out: list[FieldError] = []
    for i, ev in enumerate(_list(env)):
        p = index(path, i)
        name = _str(ev.get("name"))
        if not name:
            out.append(field_required(child(p, "name")))
        else:
            # RelaxedEnvironmentVariableValidation is GA (and always on) in 1.34+.
            out += [field_invalid(child(p, "name"), name, m) for m in fmt.is_relaxed_env_var_name(name)]
        out += _value_from(ev, child(p, "valueFrom"))
    return out


def _value_from(ev: Mapping[str, Any], path: str) -> list[FieldError]:
    source = ev.get("valueFrom")
    if not isinstance(source, Mapping):
        return []
    out: list[FieldError] = []
    n = 0
    field_ref = source.get("fieldRef")
    if isinstance(field_ref, Mapping):
        n += 1
        fp = child(path, "fieldRef")
        if not _str(field_ref.get("apiVersion")):
            out.append(field_required(child(fp, "apiVersion")))
        elif not _str(field_ref.get("fieldPath")):
            out.append(field_required(child(fp, "fieldPath")))
        else:
            target = field_ref["fieldPath"]
            if "[" in target:
                base, _, sub = target.partition("[")
                sub = sub.rstrip("]").strip("'\"")
                if base == "metadata.annotations":
                    out += [field_invalid(fp, sub.lower(), m) for m in fmt.is_qualified_name(sub.lower())]
                elif base == "metadata.labels":
                    out += [field_invalid(fp, sub, m) for m in fmt.is_qualified_name(sub)]
                else:
                    out.append(field_invalid(fp, base, "does not support subscript"))
            elif target not in _ENV_FIELD_PATHS:
                out.append(field_not_supported(child(fp, "fieldPath"), target, _ENV_FIELD_PATHS))
    res_ref = source.get("resourceFieldRef")
    if isinstance(res_ref, Mapping):
        n += 1
        rp = child(path, "resourceFieldRef")
        res = _str(res_ref.get("resource"))
        if not res:
            out.append(field_required(child(rp, "resource")))
        elif res not in _RESOURCE_FIELD_PATHS and not res.startswith(
            ("requests.hugepages-", "limits.hugepages-")
        ):
            out.append(field_not_supported(child(rp, "resource"), res, _RESOURCE_FIELD_PATHS))
    for ref_name in ("configMapKeyRef", "secretKeyRef"):
        ref = source.get(ref_name)
        if isinstance(ref, Mapping):
            n += 1
            out += key_selector(ref, child(path, ref_name))
    if n == 0:
        out.append(
            field_invalid(
                path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            )
        )
    elif ev.get("value"):
        out.append(field_invalid(path, "", "may not be specified when `value` is not empty"))
    elif n > 1:
        out.append(field_invalid(path, "", "may not have more than one field specified at a time"))
    return out


def key_selector(ref: Mapping[str, Any], path: str) -> list[FieldError]:
    """validateSecretKeySelector / validateConfigMapKeySelector: a valid object name and data key."""
    name = _str(ref.get("name"))
    out = [field_invalid(child(path, "name"), name, m) for m in fmt.name_is_dns_subdomain(name)]
    k = _str(ref.get("key"))
    if not k:
        out.append(field_required(child(path, "key")))
    else:
        out += [field_invalid(child(path, "key"), k, m) for m in fmt.is_config_map_key(k)]
    return out


def _env_from(sources: Any, path: str) -> list[FieldError]:
    out: list[FieldError] = []
    for i, ev in enumerate(_list(sources)):
        p = index(path, i)
        prefix = _str(ev.get("prefix"))
        if prefix:
            out += [field_invalid(child(p, "prefix"), prefix, m) for m in fmt.is_relaxed_env_var_name(prefix)]
        n = 0
        for ref_name in ("configMapRef", "secretRef"):
            ref = ev.get(ref_name)
            if isinstance(ref, Mapping):
                n += 1
                name = _str(ref.get("name"))
                if not name:
                    out.append(field_required(child(child(p, ref_name), "name")))
                else:
                    out += [field_invalid(child(child(p, ref_name), "name"), name, m)
                            for m in fmt.name_is_dns_subdomain(name, True)]  # fmt: skip
        if n == 0:
            out.append(field_invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif n > 1:
            out.append(field_invalid(path, "", "may not have more than one field specified at a time"))
    return out


def _mounts(mounts: Any, volumes: Mapping[str, Any], path: str) -> list[FieldError]:
    out: list[FieldError] = []
    points: set[str] = set()
    for i, m in enumerate(_list(mounts)):
        p = index(path, i)
        name = _str(m.get("name"))
        if not name:
            out.append(field_required(child(p, "name")))
        if name not in volumes:
            out.append(field_not_found(child(p, "name"), name))
        mount_path = _str(m.get("mountPath"))
        if not mount_path:
            out.append(field_required(child(p, "mountPath")))
        if mount_path in points:
            out.append(field_invalid(child(p, "mountPath"), mount_path, "must be unique"))
        points.add(mount_path)
        sub = _str(m.get("subPath"))
        if sub:
            if sub.startswith("/"):
                out.append(field_invalid(child(path, "subPath"), sub, "must be a relative path"))
            if ".." in sub.split("/"):
                out.append(field_invalid(child(path, "subPath"), sub, "must not contain '..'"))
    return out


def resources(res: Any, path: str) -> list[FieldError]:
    """validateResourceRequirements for containers."""
    if not isinstance(res, Mapping):
        return []
    out: list[FieldError] = []
    limits = res.get("limits") if isinstance(res.get("limits"), Mapping) else {}
    requests = res.get("requests") if isinstance(res.get("requests"), Mapping) else {}
    lim_path, req_path = child(path, "limits"), child(path, "requests")
    for name, value in limits.items():
        out += _resource_name(name, key(lim_path, name))
        out += _quantity_value(value, key(lim_path, name))
    for name, value in requests.items():
        p = key(req_path, name)
        out += _resource_name(name, p)
        out += _quantity_value(value, p)
        if name in limits:
            req_q, lim_q = quantity.parse(value), quantity.parse(limits[name])
            if not _overcommit_allowed(name) and req_q.value != lim_q.value:
                out.append(field_invalid(req_path, str(req_q), f"must be equal to {name} limit of {lim_q}"))
            elif req_q > lim_q:
                out.append(
                    field_invalid(
                        req_path, str(req_q), f"must be less than or equal to {name} limit of {lim_q}"
                    )
                )
        elif not _overcommit_allowed(name):
            out.append(field_required(lim_path, "Limit must be set for non overcommitable resources"))
    return out


def _overcommit_allowed(name: str) -> bool:
    """IsOvercommitAllowed: native resources except hugepages."""
    native = "/" not in name or name.startswith("kubernetes.io/")
    return native and not name.startswith("hugepages-")


def _resource_name(name: str, path: str) -> list[FieldError]:
    out = [field_invalid(path, name, m) for m in fmt.is_qualified_name(name)]
    if out:
        return out
    if "/" not in name:
        if name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            return [field_invalid(path, name, "must be a standard resource for containers")]
    elif not name.startswith("kubernetes.io/") and (
        ".kubernetes.io/" in name or name.startswith("requests.")
    ):
        return [field_invalid(path, name, "doesn't follow extended resource name standard")]
    return []


def _quantity_value(value: Any, path: str) -> list[FieldError]:
    q = quantity.parse(value)
    if q.value < 0:
        return [field_invalid(path, str(q), "must be greater than or equal to 0")]
    return []


def _probe(
    probe: Any, path: str, *, success_is_one: bool = False, readiness: bool = False
) -> list[FieldError]:
    if not isinstance(probe, Mapping):
        return []
    out = _handler(probe, path, probe=True)
    for f in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        out += non_negative(probe.get(f), child(path, f))
    grace = probe.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace <= 0:
        out.append(
            field_invalid(child(path, "terminationGracePeriodSeconds"), grace, "must be greater than 0")
        )
    if success_is_one and probe.get("successThreshold") not in (None, 1):
        out.append(field_invalid(child(path, "successThreshold"), probe["successThreshold"], "must be 1"))
    if readiness and grace is not None:
        out.append(
            field_invalid(
                child(path, "terminationGracePeriodSeconds"), grace, "must not be set for readinessProbes"
            )
        )
    return out


def _handler(handler: Mapping[str, Any], path: str, *, probe: bool = False) -> list[FieldError]:
    kinds = ("exec", "httpGet", "tcpSocket", "grpc") if probe else ("exec", "httpGet", "tcpSocket", "sleep")
    present = [k for k in kinds if handler.get(k) is not None]
    out = [field_forbidden(child(path, k), "may not specify more than 1 handler type") for k in present[1:]]
    if not present:
        return [field_required(path, "must specify a handler type")]
    k = present[0]
    body = handler[k] if isinstance(handler[k], Mapping) else {}
    p = child(path, k)
    if k == "exec" and not body.get("command"):
        out.append(field_required(child(p, "command")))
    elif k == "httpGet":
        if not _str(body.get("path")):
            out.append(field_required(child(p, "path")))
        out += port_num_or_name(body.get("port"), child(p, "port"))
        scheme = body.get("scheme")
        if scheme not in ("HTTP", "HTTPS"):
            out.append(field_not_supported(child(p, "scheme"), scheme, ["HTTP", "HTTPS"]))
        for header in body.get("httpHeaders") or []:
            name = header.get("name") if isinstance(header, Mapping) else None
            # validateHTTPGetAction: validation.IsHTTPHeaderName on each header, reported on httpHeaders.
            if isinstance(name, str) and not _HTTP_HEADER_NAME.match(name):
                out.append(
                    field_invalid(
                        child(p, "httpHeaders"),
                        name,
                        fmt.regex_error(_HTTP_HEADER_MSG, "[-A-Za-z0-9]+", "X-Header-Name"),
                    )
                )
    elif k == "tcpSocket" or k == "grpc":
        out += port_num_or_name(body.get("port"), child(p, "port"))
    return out


_HTTP_HEADER_NAME = re.compile(r"^[-A-Za-z0-9]+$")
_HTTP_HEADER_MSG = "a valid HTTP header must consist of alphanumeric characters or '-'"


def port_num_or_name(port: Any, path: str) -> list[FieldError]:
    if isinstance(port, str):
        return [field_invalid(path, port, m) for m in fmt.is_valid_port_name(port)]
    return [field_invalid(path, port, m) for m in fmt.is_valid_port_num(port)]


def _id_range(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, int) and not 0 <= value <= 2147483647:
        return [field_invalid(path, value, fmt.inclusive_range_error(0, 2147483647))]
    return []


def _security_context(sc: Any, path: str) -> list[FieldError]:
    if not isinstance(sc, Mapping):
        return []
    out = _id_range(sc.get("runAsUser"), child(path, "runAsUser"))
    out += _id_range(sc.get("runAsGroup"), child(path, "runAsGroup"))
    if sc.get("allowPrivilegeEscalation") is False and sc.get("privileged") is True:
        out.append(
            field_invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true")
        )
    caps = sc.get("capabilities") if isinstance(sc.get("capabilities"), Mapping) else {}
    if sc.get("allowPrivilegeEscalation") is False and "CAP_SYS_ADMIN" in (caps.get("add") or []):
        out.append(
            field_invalid(
                path,
                sc,
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            )
        )
    return out


def _pod_security_context(sc: Any, path: str) -> list[FieldError]:
    if not isinstance(sc, Mapping):
        return []
    out = _id_range(sc.get("runAsUser"), child(path, "runAsUser"))
    out += _id_range(sc.get("runAsGroup"), child(path, "runAsGroup"))
    out += _id_range(sc.get("fsGroup"), child(path, "fsGroup"))
    for i, g in enumerate(sc.get("supplementalGroups") or []):
        out += _id_range(g, index(child(path, "supplementalGroups"), i))
    return out


def _tolerations(tolerations: Any, path: str) -> list[FieldError]:
    out: list[FieldError] = []
    for i, t in enumerate(_list(tolerations)):
        p = index(path, i)
        k = _str(t.get("key"))
        if k:
            out += label_name(k, child(p, "key"))
        op = t.get("operator") or ""
        if not k and op != "Exists":
            out.append(
                field_invalid(
                    child(p, "operator"),
                    op,
                    'operator must be Exists when `key` is empty, which means "match all values and all keys"',
                )
            )
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            out.append(
                field_invalid(
                    child(p, "effect"),
                    t.get("effect") or "",
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
        if op in ("Equal", ""):
            errs = fmt.is_valid_label_value(_str(t.get("value")))
            if errs:
                out.append(field_invalid(child(p, "operator"), t.get("value"), ";".join(errs)))
        elif op == "Exists":
            if t.get("value"):
                out.append(
                    field_invalid(
                        child(p, "operator"),
                        t.get("value"),
                        "value must be empty when `operator` is 'Exists'",
                    )
                )
        else:
            out.append(field_not_supported(child(p, "operator"), op, ["Equal", "Exists"]))
        effect = t.get("effect")
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            out.append(
                field_not_supported(
                    child(p, "effect"), effect, ["NoSchedule", "PreferNoSchedule", "NoExecute"]
                )
            )
    return out


def _topology_spread(constraints: Any, path: str) -> list[FieldError]:
    out: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(_list(constraints)):
        p = index(path, i)
        skew = c.get("maxSkew")
        if not isinstance(skew, int) or skew <= 0:
            out.append(field_invalid(child(p, "maxSkew"), skew, "must be greater than zero"))
        topology_key = _str(c.get("topologyKey"))
        if not topology_key:
            out.append(field_required(child(p, "topologyKey"), "can not be empty"))
        else:
            out += label_name(topology_key, child(p, "topologyKey"))
        when = c.get("whenUnsatisfiable")
        if when not in ("DoNotSchedule", "ScheduleAnyway"):
            out.append(
                field_not_supported(child(p, "whenUnsatisfiable"), when, ["DoNotSchedule", "ScheduleAnyway"])
            )
        pair = (topology_key, _str(when))
        if pair in seen:
            out.append(field_duplicate(p, f"{{{topology_key}, {when}}}"))
        seen.add(pair)
        out += label_selector(c.get("labelSelector"), child(p, "labelSelector"))
        match_keys = c.get("matchLabelKeys") or []
        if match_keys and c.get("labelSelector") is None:
            out.append(
                field_forbidden(
                    child(p, "matchLabelKeys"), "must not be specified when labelSelector is not set"
                )
            )
        for j, mk in enumerate(match_keys):
            out += label_name(mk, index(child(p, "matchLabelKeys"), j))
        min_domains = c.get("minDomains")
        if min_domains is not None:
            if not isinstance(min_domains, int) or min_domains <= 0:
                out.append(field_invalid(child(p, "minDomains"), min_domains, "must be greater than 0"))
            elif when != "DoNotSchedule":
                out.append(
                    field_invalid(
                        child(p, "minDomains"),
                        min_domains,
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule",
                    )
                )
    return out


_POD_UPDATE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def pod_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    """ValidatePodUpdate (pkg/apis/core/validation/validation.go): the spec is immutable except the
    listed fields; every other change is one Forbidden on ``spec``. The scheduler's binding (nodeName
    from unset to set; the binding subresource on a real server) is allowed."""
    new_spec = new.get("spec") if isinstance(new.get("spec"), Mapping) else {}
    old_spec = old.get("spec") if isinstance(old.get("spec"), Mapping) else {}
    munged = dict(new_spec)
    for group in ("containers", "initContainers"):
        new_list, old_list = munged.get(group), old_spec.get(group)
        if isinstance(new_list, list) and isinstance(old_list, list) and len(new_list) == len(old_list):
            munged[group] = [
                {**n, "image": o.get("image")} if isinstance(n, Mapping) and isinstance(o, Mapping) else n
                for n, o in zip(new_list, old_list, strict=True)
            ]
    for field in ("activeDeadlineSeconds",):
        if field in old_spec:
            munged[field] = old_spec[field]
        else:
            munged.pop(field, None)
    old_tolerations = old_spec.get("tolerations") or []
    new_tolerations = munged.get("tolerations") or []
    if all(t in new_tolerations for t in old_tolerations):
        if "tolerations" in old_spec:
            munged["tolerations"] = old_spec["tolerations"]
        else:
            munged.pop("tolerations", None)
    grace = old_spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = grace
    if not old_spec.get("nodeName") and munged.get("nodeName"):
        munged.pop("nodeName")
        munged.update({k: v for k, v in old_spec.items() if k == "nodeName"})
    if munged != dict(old_spec):
        return [field_forbidden("spec", _POD_UPDATE_MESSAGE)]
    return []
