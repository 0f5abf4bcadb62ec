"""What the mocked cloud answers: plausible outputs for registered resources and invoke results.

Only `up`-mode runs use `outputs`; in preview mode computed outputs stay unknown. Values are
deterministic (derived from names) so plans and snapshots are byte-stable.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

ACCOUNT_ID = "123456789012"


def _suffix(name: str, length: int = 17) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:length]


def _password(name: str, length: int, specials: str) -> str:
    """Deterministic, and drawing on the specials the way the random provider would, so tests see them."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + specials
    digest = hashlib.sha256(("password" + name).encode()).digest() * (length // 32 + 1)
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def _eks_cluster(name: str, inputs: Mapping[str, Any], region: str) -> dict[str, Any]:
    ident = _suffix(name, 32).upper()
    return {
        "endpoint": f"https://{ident}.gr7.{region}.eks.amazonaws.com",
        "certificateAuthority": {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="},
        "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{ident}"}]}],
        "vpcConfig": {
            **inputs.get("vpcConfig", {}),
            "clusterSecurityGroupId": f"sg-{_suffix(name + 'cluster')}",
        },
        "name": inputs.get("name", name),
    }


def _firewall(name: str, inputs: Mapping[str, Any], _region: str) -> dict[str, Any]:
    # One endpoint per subnet mapping, listed in reverse so code that assumes subnet order breaks here.
    attachments = [
        {"subnetId": m["subnetId"], "endpointId": f"vpce-{_suffix(name + m['subnetId'])}", "status": "READY"}
        for m in inputs.get("subnetMappings", [])
    ]
    return {
        "firewallStatuses": [
            {"syncStates": [{"availabilityZone": "", "attachments": [a]} for a in reversed(attachments)]}
        ]
    }


def _oidc_provider(_name: str, inputs: Mapping[str, Any], _region: str) -> dict[str, Any]:
    host = str(inputs.get("url", "")).removeprefix("https://")
    return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{host}"}


def _zone_id_prefix(region: str) -> str:
    # AWS's zone ids abbreviate the region: us-east-1 -> use1, ca-central-1 -> cac1.
    area, direction, number = region.split("-")[0], region.split("-")[1:-1], region.split("-")[-1]
    return area + "".join(word[0] for word in direction) + number


_ID_PREFIX: dict[str, str] = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt",
}

_SPECIAL: dict[str, Callable[[str, Mapping[str, Any], str], dict[str, Any]]] = {
    "aws:eks/cluster:Cluster": _eks_cluster,
    "aws:rds/instance:Instance": lambda name, inputs, region: {
        "address": f"{name}.{_suffix(name, 12)}.{region}.rds.amazonaws.com",
        "port": inputs.get("port", 5432),
        # RDS creates the secret only when it manages the master password.
        "masterUserSecrets": [
            {
                "secretArn": f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:rds!db-{_suffix(name, 8)}",
                "secretStatus": "active",
            }
        ]
        if inputs.get("manageMasterUserPassword")
        else [],
    },
    "aws:elasticache/replicationGroup:ReplicationGroup": lambda name, inputs, region: {
        "primaryEndpointAddress": f"master.{name}.{_suffix(name, 6)}.{region}.cache.amazonaws.com",
        "port": inputs.get("port", 6379),
    },
    "aws:kms/key:Key": lambda name, _inputs, _region: {"keyId": _suffix(name, 32)},
    # A deterministic stand-in, so tests can prove the generated value never leaks in plaintext.
    "random:index/randomPassword:RandomPassword": lambda name, inputs, _region: {
        "result": _password(name, int(inputs.get("length", 16)), str(inputs.get("overrideSpecial", ""))),
    },
    "random:index/randomId:RandomId": lambda name, inputs, _region: {
        "hex": _suffix("id" + name, 2 * int(inputs.get("byteLength", 4))),
    },
    "aws:networkfirewall/firewall:Firewall": _firewall,
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": _oidc_provider,
    "aws:ec2/launchTemplate:LaunchTemplate": lambda _name, _inputs, _region: {
        "latestVersion": 1,
        "defaultVersion": 1,
    },
    # What LangSmith answers to the registration: a listener id (deterministic per resource name).
    "pulumi-python:dynamic/langsmith:ListenerRegistration": lambda name, _inputs, _region: {
        "listener_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"langsmith-listener/{name}")),
        "adopted": False,
    },
}


def outputs(typ: str, name: str, inputs: Mapping[str, Any], region: str) -> dict[str, Any]:
    """Computed outputs a real provider would return for a newly created resource."""
    result: dict[str, Any] = {}
    if typ.startswith("aws:"):
        service = typ.split(":")[1].split("/")[0]
        result["arn"] = f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{name}"
        if "name" not in inputs:
            result["name"] = name
    prefix = _ID_PREFIX.get(typ)
    if prefix:
        result["id"] = f"{prefix}-{_suffix(name)}"
    special = _SPECIAL.get(typ)
    if special:
        result.update(special(name, inputs, region))
    return result


def invoke(token: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
    """Answers to data-source lookups (`aws.get_*`); unknown tokens answer an empty result."""
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        zones = [
            (f"{region}{letter}", f"{_zone_id_prefix(region)}-az{i}") for i, letter in enumerate("abcdef", 1)
        ]
        excluded_names = set(args.get("excludeNames") or [])
        excluded_ids = set(args.get("excludeZoneIds") or [])
        kept = [(n, z) for n, z in zones if n not in excluded_names and z not in excluded_ids]
        return {"names": [n for n, _ in kept], "zoneIds": [z for _, z in kept], "id": region}
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "accountId": ACCOUNT_ID,
            "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/plan",
            "userId": "PLAN",
            "id": "x",
        }
    if token == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
    if token == "aws:index/getRegion:getRegion":
        return {"name": region, "region": region, "id": region}
    if token == "aws:eks/getCluster:getCluster":
        name = str(args.get("name"))
        return {
            **_eks_cluster(name, {}, region),
            "arn": f"arn:aws:eks:{region}:{ACCOUNT_ID}:cluster/{name}",
            "certificateAuthorities": [{"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}],
            "version": "1.33",
            "id": name,
        }
    if token == "aws:eks/getAddonVersion:getAddonVersion":
        # Which version EKS picks is only known to EKS: the plan says so rather than guess a number.
        return {
            "addonName": args.get("addonName"),
            "kubernetesVersion": args.get("kubernetesVersion"),
            "version": f"<EKS default for {args.get('kubernetesVersion')}>",
            "id": str(args.get("addonName")),
        }
    if token == "aws:ssm/getParameter:getParameter":
        name = str(args.get("name", ""))
        return {"name": name, "type": "String", "value": f"ami-{_suffix(name)}", "id": name}
    if token == "aws:iam/getPolicyDocument:getPolicyDocument":
        return {"json": json.dumps(args, sort_keys=True), "id": "policy"}
    return {}
