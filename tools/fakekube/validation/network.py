"""Ingresses and NetworkPolicies (pkg/apis/networking/validation/validation.go)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from tools.fakekube import formats as fmt
from tools.fakekube.errors import (
    FieldError,
    field_forbidden,
    field_invalid,
    field_not_supported,
    field_required,
)
from tools.fakekube.validation.meta import child, index, label_selector
from tools.fakekube.validation.pods import port_num_or_name

_PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
_PROTOCOLS = ["SCTP", "TCP", "UDP"]


def _backend(backend: Any, path: str) -> list[FieldError]:
    if not isinstance(backend, Mapping):
        return [field_required(path)]
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [field_invalid(path, "", "cannot set both resource and service backends")]
    if service is None and resource is None:
        return [field_invalid(path, "", "must specify a resource or service backend")]
    if service is None:
        return []
    p = child(path, "service")
    out = []
    name = service.get("name") or ""
    if not name:
        out.append(field_required(child(p, "name")))
    else:
        out += [field_invalid(child(p, "name"), name, m) for m in fmt.name_is_dns1035_label(name)]
    port = service.get("port") or {}
    has_name, has_number = bool(port.get("name")), bool(port.get("number"))
    if has_name and has_number:
        out.append(field_invalid(child(p, "port"), port, "cannot set both port name & port number"))
    elif has_name:
        out += [
            field_invalid(child(child(p, "port"), "name"), port["name"], m)
            for m in fmt.is_valid_port_name(port["name"])
        ]
    elif has_number:
        out += [
            field_invalid(child(child(p, "port"), "number"), port["number"], m)
            for m in fmt.is_valid_port_num(port["number"])
        ]
    else:
        out.append(field_required(child(p, "port"), "port name or number is required"))
    return out


def ingress(obj: Mapping[str, Any]) -> list[FieldError]:
    spec = obj.get("spec") or {}
    out: list[FieldError] = []
    if not spec.get("rules") and spec.get("defaultBackend") is None:
        out.append(
            field_invalid(
                "spec.rules", spec.get("rules") or [], "either `defaultBackend` or `rules` must be specified"
            )
        )
    if spec.get("defaultBackend") is not None:
        out += _backend(spec["defaultBackend"], "spec.defaultBackend")
    cls = spec.get("ingressClassName")
    if cls:
        out += [field_invalid("spec.ingressClassName", cls, m) for m in fmt.name_is_dns_subdomain(cls)]
    for i, rule in enumerate(spec.get("rules") or []):
        p = index("spec.rules", i)
        host = rule.get("host") or ""
        if host:
            out += _host(host, child(p, "host"))
        http = rule.get("http")
        if http is None:
            continue
        paths = http.get("paths") or []
        if not paths:
            out.append(field_required(child(child(p, "http"), "paths")))
        for j, item in enumerate(paths):
            pp = index(child(child(p, "http"), "paths"), j)
            ptype = item.get("pathType")
            if not ptype:
                out.append(field_required(child(pp, "pathType"), "pathType must be specified"))
            elif ptype not in _PATH_TYPES:
                out.append(field_not_supported(child(pp, "pathType"), ptype, _PATH_TYPES))
            value = item.get("path") or ""
            if ptype in ("Exact", "Prefix"):
                if not value.startswith("/"):
                    out.append(field_invalid(child(pp, "path"), value, "must be an absolute path"))
                for bad in ("//", "/./", "/../", "%2f", "%2F"):
                    if bad in value:
                        out.append(field_invalid(child(pp, "path"), value, f"must not contain '{bad}'"))
                for suffix in ("/..", "/."):
                    if value.endswith(suffix):
                        out.append(field_invalid(child(pp, "path"), value, f"cannot end with '{suffix}'"))
            elif value and not value.startswith("/"):
                out.append(field_invalid(child(pp, "path"), value, "must be an absolute path"))
            out += _backend(item.get("backend"), child(pp, "backend"))
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate(tls.get("hosts") or []):
            out += _host(host, index(child(index("spec.tls", i), "hosts"), j))
    return out


def _host(host: str, path: str) -> list[FieldError]:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [field_invalid(path, host, "must be a DNS name, not an IP address")]
    if host.startswith("*."):
        errs = fmt.is_dns1123_subdomain(host[2:])
        return (
            [
                field_invalid(
                    path,
                    host,
                    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which "
                    "must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric "
                    "character (e.g. '*.example.com', regex used for validation is "
                    "'\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                )
            ]
            if errs
            else []
        )
    return [field_invalid(path, host, m) for m in fmt.is_dns1123_subdomain(host)]


def network_policy(obj: Mapping[str, Any]) -> list[FieldError]:
    spec = obj.get("spec") or {}
    out = label_selector(spec.get("podSelector"), "spec.podSelector")
    for direction, peers_field in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            p = index(f"spec.{direction}", i)
            for j, port in enumerate(rule.get("ports") or []):
                out += _np_port(port, index(child(p, "ports"), j))
            for j, peer in enumerate(rule.get(peers_field) or []):
                out += _peer(peer, index(child(p, peers_field), j))
    types = spec.get("policyTypes") or []
    if len(types) > 2:
        out.append(field_invalid("spec.policyTypes", types, "may not specify more than two policyTypes"))
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            out.append(field_not_supported(index("spec.policyTypes", i), t, ["Egress", "Ingress"]))
    return out


def _np_port(port: Mapping[str, Any], path: str) -> list[FieldError]:
    out: list[FieldError] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in _PROTOCOLS:
        out.append(field_not_supported(child(path, "protocol"), protocol, _PROTOCOLS))
    number = port.get("port")
    if number is not None:
        out += port_num_or_name(number, child(path, "port"))
    end = port.get("endPort")
    if end is not None:
        if number is None:
            out.append(field_required(child(path, "port"), "may not be empty when `endPort` is specified"))
        elif isinstance(number, str):
            out.append(
                field_forbidden(child(path, "endPort"), "may not be specified when `port` is non-numeric")
            )
        elif end < number:
            out.append(field_invalid(child(path, "endPort"), end, "must be greater than or equal to `port`"))
        out += [field_invalid(child(path, "endPort"), end, m) for m in fmt.is_valid_port_num(end)]
    return out


def _peer(peer: Mapping[str, Any], path: str) -> list[FieldError]:
    out: list[FieldError] = []
    present = [f for f in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(f) is not None]
    if not present:
        return [field_required(path, "must specify a peer")]
    if "ipBlock" in present and len(present) > 1:
        out.append(field_forbidden(path, "may not specify both ipBlock and another peer"))
    for f in ("podSelector", "namespaceSelector"):
        out += label_selector(peer.get(f), child(path, f))
    block = peer.get("ipBlock")
    if isinstance(block, Mapping):
        bp = child(path, "ipBlock")
        cidr = block.get("cidr") or ""
        if not cidr:
            out.append(field_required(child(bp, "cidr")))
            return out
        errs = fmt.is_valid_cidr(cidr)
        out += [field_invalid(child(bp, "cidr"), cidr, m) for m in errs]
        if errs:
            return out
        net = ipaddress.ip_network(cidr, strict=False)
        for i, ex in enumerate(block.get("except") or []):
            ep = index(child(bp, "except"), i)
            ex_errs = fmt.is_valid_cidr(ex)
            if ex_errs:
                out += [field_invalid(ep, ex, m) for m in ex_errs]
                continue
            ex_net = ipaddress.ip_network(ex, strict=False)
            if ex_net.version != net.version or not ex_net.subnet_of(net) or ex_net == net:  # type: ignore[arg-type]
                out.append(field_invalid(ep, ex, "must be a strict subset of `cidr`"))
    return out
