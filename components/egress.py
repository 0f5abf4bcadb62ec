"""Egress from the data plane to the LangSmith control plane: security group and/or Network Firewall.

The allowlist is computed by the pure `egress_allowlist` from the stack's LangSmith region (whose
hosts and published IPs come from `listener.regions`, the single source of those facts) and its
extra destinations; the `ControlPlaneEgress` component only turns it into resources.

* `security-group`: a dedicated security group with one egress rule per (CIDR, port) and nothing
  else. It is attached to the nodes *in addition to* the EKS cluster security group, which carries
  what nodes need for ECR, STS, the EKS API and DNS (and, as created by EKS, allows all egress). So on
  its own this mode states the allowlist; it restricts nothing until the nodes' other security groups
  stop allowing all egress. The published IPs are also only those of `api.smith.*` (no list exists for
  `api.host.*`), which is why the firewall's domain allowlist is the enforcing, safer mode.
* `network-firewall`: AWS Network Firewall with a stateful domain allowlist (TLS SNI and HTTP Host),
  strict rule order and `aws:drop_established` as default action, in its own subnet per AZ. Private
  route tables send 0.0.0.0/0 to the firewall endpoint of their AZ, and the NAT subnets' route table
  sends each private subnet's CIDR back through that AZ's endpoint, so both directions of every flow
  cross the same endpoint (the stateful engine drops asymmetric flows).
* `both`: the two together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.config import CidrDestination, DomainDestination, Egress, EgressMode, LangSmith

HTTPS = 443
# Rule-group capacity cannot change after creation (a change replaces the group, which the policy still
# references), so it is fixed generously: one unit per domain and target type.
RULE_GROUP_CAPACITY = 200
_TARGET_TYPES = ("TLS_SNI", "HTTP_HOST")

# What nodes call on AWS APIs themselves (image pulls, IRSA token exchange, VPC CNI and EBS CSI calls
# to EC2). Behind the firewall these must be allowed by name unless an interface endpoint with private
# DNS keeps them inside the VPC. The EKS API endpoint is private (in-VPC) and S3 goes through the
# gateway endpoint, so neither needs an entry.
_NODE_AWS_SERVICES: Mapping[str, str] = {
    "ecr.api": "api.ecr.{region}.amazonaws.com",
    "ecr.dkr": ".dkr.ecr.{region}.amazonaws.com",
    "sts": "sts.{region}.amazonaws.com",
    "ec2": "ec2.{region}.amazonaws.com",
}

ROLE_TAG = "langsmith-dataplane/role"
"""How the policy pack recognises what a security group is for (policy/policies.py reads the same key)."""
CONTROL_PLANE_EGRESS = "control-plane-egress"


def uses_security_group(mode: EgressMode) -> bool:
    return mode in ("security-group", "both")


def uses_firewall(mode: EgressMode) -> bool:
    return mode in ("network-firewall", "both")


@dataclass(frozen=True, order=True)
class CidrRule:
    cidr: str
    port: int
    description: str = field(compare=False)


@dataclass(frozen=True)
class EgressAllowlist:
    """The effective egress allowlist of a stack, as plain data (exported as `egressAllowlist`)."""

    mode: EgressMode
    control_plane_hosts: tuple[str, ...]
    security_group_rules: tuple[CidrRule, ...]
    """Empty unless the mode uses the security group."""
    extra_domains: tuple[str, ...]
    aws_service_domains: tuple[str, ...]
    """AWS APIs the nodes reach through the firewall because no interface endpoint covers them."""
    firewall_domains: tuple[str, ...]
    """Everything the firewall lets through; empty unless the mode uses the firewall."""

    def as_output(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "controlPlaneHosts": list(self.control_plane_hosts),
            "securityGroupRules": [
                {"cidr": r.cidr, "port": r.port, "description": r.description}
                for r in self.security_group_rules
            ],
            "firewallDomains": list(self.firewall_domains),
            "extraDomains": list(self.extra_domains),
            "awsServiceDomains": list(self.aws_service_domains),
        }


def egress_allowlist(
    langsmith: LangSmith, egress: Egress, *, region: str, interface_endpoints: Sequence[str]
) -> EgressAllowlist:
    """Compute the allowlist: pure, so tests compare it against `listener.regions` directly."""
    label = f"LangSmith {langsmith.region}" if langsmith.url is None else "self-hosted LangSmith"
    rules: set[CidrRule] = set()
    extra_domains: list[str] = []
    if uses_security_group(egress.mode):
        rules |= {CidrRule(cidr, HTTPS, f"{label} over HTTPS") for cidr in langsmith.ip_cidrs}
    for destination in egress.extra_destinations:
        if isinstance(destination, CidrDestination) and uses_security_group(egress.mode):
            rules.add(CidrRule(str(destination.cidr), destination.port, "extra destination (stack config)"))
        elif isinstance(destination, DomainDestination):
            extra_domains.append(destination.domain)

    aws_domains: tuple[str, ...] = ()
    firewall_domains: tuple[str, ...] = ()
    if uses_firewall(egress.mode):
        aws_domains = tuple(
            sorted(
                pattern.format(region=region)
                for service, pattern in _NODE_AWS_SERVICES.items()
                if service not in interface_endpoints
            )
        )
        firewall_domains = tuple(sorted({*langsmith.hosts, *extra_domains, *aws_domains}))
    return EgressAllowlist(
        mode=egress.mode,
        control_plane_hosts=tuple(langsmith.hosts),
        security_group_rules=tuple(sorted(rules)),
        extra_domains=tuple(sorted(set(extra_domains))),
        aws_service_domains=aws_domains,
        firewall_domains=firewall_domains,
    )


def endpoint_for_subnet(firewall_statuses: Sequence[Any] | None, subnet_id: str) -> str:
    """The firewall endpoint id attached to `subnet_id`, from the firewall's `firewall_statuses`.

    Matched by subnet id, not by position: AWS does not promise the sync states in subnet order.
    """
    for status in firewall_statuses or []:
        for state in _get(status, "sync_states") or []:
            for attachment in _get(state, "attachments") or []:
                if _get(attachment, "subnet_id") == subnet_id and _get(attachment, "endpoint_id"):
                    return str(_get(attachment, "endpoint_id"))
    raise ValueError(f"the network firewall reports no endpoint in subnet {subnet_id}")


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) and key in obj else getattr(obj, key, None)


def _slug(cidr: str, port: int) -> str:
    return f"{cidr.replace('.', '-').replace('/', '-')}-{port}"


@dataclass(frozen=True)
class FirewallPlacement:
    """What the firewall needs from the network (provided by `Network` in create mode)."""

    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    firewall_subnet_ids: Sequence[pulumi.Input[str]]
    """One per AZ, index i in the same AZ as private route table i."""
    private_route_table_ids: Sequence[pulumi.Input[str]]
    private_subnet_cidrs: Sequence[str]
    nat_route_table_id: pulumi.Input[str]


@dataclass(frozen=True)
class ControlPlaneEgressArgs:
    allowlist: EgressAllowlist
    vpc_id: pulumi.Input[str]
    tags: Mapping[str, str]
    firewall: FirewallPlacement | None = None
    """Required when the allowlist's mode uses the firewall."""
    firewall_log_retention_days: int = 90


class ControlPlaneEgress(pulumi.ComponentResource):
    allowlist: EgressAllowlist
    security_group_id: pulumi.Output[str] | None
    """Attach to the nodes (with the cluster security group); None unless the mode uses it."""
    firewall_arn: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: ControlPlaneEgressArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("langsmith:infra:ControlPlaneEgress", name, None, opts)
        self._name = name
        self._tags = dict(args.tags)
        self.allowlist = args.allowlist
        self.security_group_id = None
        self.firewall_arn = None
        if uses_security_group(args.allowlist.mode):
            self.security_group_id = self._security_group(args)
        if uses_firewall(args.allowlist.mode):
            if args.firewall is None:
                raise ValueError(f"egress mode {args.allowlist.mode!r} needs a firewall placement")
            self.firewall_arn = self._firewall(args.firewall, args.firewall_log_retention_days)
        self.register_outputs(
            {
                "allowlist": args.allowlist.as_output(),
                "securityGroupId": self.security_group_id,
                "firewallArn": self.firewall_arn,
            }
        )

    def _tagged(self, name: str, role: str | None = None) -> dict[str, str]:
        return {**self._tags, "Name": name, **({ROLE_TAG: role} if role else {})}

    def _security_group(self, args: ControlPlaneEgressArgs) -> pulumi.Output[str]:
        name = self._name
        # No inline rules: the provider then strips AWS's default allow-all egress, and each allowed
        # destination is one SecurityGroupEgressRule a reviewer (and the policy pack) can see.
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            name=f"{name}-control-plane",
            description="Egress to the LangSmith control plane only (HTTPS to its published addresses)",
            vpc_id=args.vpc_id,
            tags=self._tagged(f"{name}-control-plane", CONTROL_PLANE_EGRESS),
            opts=pulumi.ResourceOptions(parent=self),
        )
        for rule in args.allowlist.security_group_rules:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{_slug(rule.cidr, rule.port)}",
                security_group_id=sg.id,
                cidr_ipv4=rule.cidr,
                ip_protocol="tcp",
                from_port=rule.port,
                to_port=rule.port,
                description=rule.description,
                tags=self._tagged(f"{name}-{_slug(rule.cidr, rule.port)}", CONTROL_PLANE_EGRESS),
                opts=pulumi.ResourceOptions(parent=self),
            )
        return sg.id

    def _firewall(self, placement: FirewallPlacement, retention_days: int) -> pulumi.Output[str]:
        name = self._name
        domains = list(self.allowlist.firewall_domains)
        if len(domains) * len(_TARGET_TYPES) > RULE_GROUP_CAPACITY:
            raise ValueError(
                f"{len(domains)} firewall domains exceed the rule group's fixed capacity "
                f"({RULE_GROUP_CAPACITY // len(_TARGET_TYPES)} domains)"
            )
        child = pulumi.ResourceOptions(parent=self)
        rule_group = aws.networkfirewall.RuleGroup(
            f"{name}-domains",
            name=f"{name}-domains",
            description="HTTPS/HTTP egress allowlist by domain (TLS SNI, HTTP Host)",
            type="STATEFUL",
            capacity=RULE_GROUP_CAPACITY,
            rule_group=aws.networkfirewall.RuleGroupRuleGroupArgs(
                rule_variables=aws.networkfirewall.RuleGroupRuleGroupRuleVariablesArgs(
                    ip_sets=[
                        aws.networkfirewall.RuleGroupRuleGroupRuleVariablesIpSetArgs(
                            key="HOME_NET",
                            ip_set=aws.networkfirewall.RuleGroupRuleGroupRuleVariablesIpSetIpSetArgs(
                                definitions=[placement.vpc_cidr]
                            ),
                        )
                    ]
                ),
                rules_source=aws.networkfirewall.RuleGroupRuleGroupRulesSourceArgs(
                    rules_source_list=aws.networkfirewall.RuleGroupRuleGroupRulesSourceRulesSourceListArgs(
                        generated_rules_type="ALLOWLIST",
                        target_types=list(_TARGET_TYPES),
                        targets=domains,
                    )
                ),
                stateful_rule_options=aws.networkfirewall.RuleGroupRuleGroupStatefulRuleOptionsArgs(
                    rule_order="STRICT_ORDER"
                ),
            ),
            tags=self._tagged(f"{name}-domains"),
            opts=child,
        )
        policy = aws.networkfirewall.FirewallPolicy(
            f"{name}-policy",
            name=f"{name}-policy",
            firewall_policy=aws.networkfirewall.FirewallPolicyFirewallPolicyArgs(
                # Everything goes to the stateful engine, which sees whole flows.
                stateless_default_actions=["aws:forward_to_sfe"],
                stateless_fragment_default_actions=["aws:forward_to_sfe"],
                stateful_engine_options=aws.networkfirewall.FirewallPolicyFirewallPolicyStatefulEngineOptionsArgs(
                    rule_order="STRICT_ORDER"
                ),
                # drop_established (not drop_strict): the TCP handshake must pass so the engine can read
                # the TLS SNI / HTTP Host; anything not allowed by then is dropped, and logged.
                stateful_default_actions=["aws:drop_established", "aws:alert_established"],
                stateful_rule_group_references=[
                    aws.networkfirewall.FirewallPolicyFirewallPolicyStatefulRuleGroupReferenceArgs(
                        priority=100, resource_arn=rule_group.arn
                    )
                ],
            ),
            tags=self._tagged(f"{name}-policy"),
            opts=child,
        )
        firewall = aws.networkfirewall.Firewall(
            f"{name}-firewall",
            name=f"{name}-firewall",
            vpc_id=placement.vpc_id,
            firewall_policy_arn=policy.arn,
            subnet_mappings=[
                aws.networkfirewall.FirewallSubnetMappingArgs(subnet_id=subnet_id)
                for subnet_id in placement.firewall_subnet_ids
            ],
            tags=self._tagged(f"{name}-firewall"),
            opts=child,
        )
        # Dropped flows are what a reviewer needs to see when something stops working.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-alerts",
            name=f"/aws/network-firewall/{name}/alert",
            retention_in_days=retention_days,
            tags=self._tagged(f"{name}-alerts"),
            opts=child,
        )
        aws.networkfirewall.LoggingConfiguration(
            f"{name}-logging",
            firewall_arn=firewall.arn,
            logging_configuration=aws.networkfirewall.LoggingConfigurationLoggingConfigurationArgs(
                log_destination_configs=[
                    aws.networkfirewall.LoggingConfigurationLoggingConfigurationLogDestinationConfigArgs(
                        log_destination_type="CloudWatchLogs",
                        log_type="ALERT",
                        log_destination={"logGroup": log_group.name},
                    )
                ]
            ),
            opts=child,
        )

        for i, (subnet_id, table_id, private_cidr) in enumerate(
            zip(
                placement.firewall_subnet_ids,
                placement.private_route_table_ids,
                placement.private_subnet_cidrs,
                strict=True,
            )
        ):
            endpoint = pulumi.Output.all(firewall.firewall_statuses, subnet_id).apply(
                lambda values: endpoint_for_subnet(values[0], values[1])
            )
            aws.ec2.Route(
                f"{name}-private-{i}-via-firewall",
                route_table_id=table_id,
                destination_cidr_block="0.0.0.0/0",
                vpc_endpoint_id=endpoint,
                opts=child,
            )
            # Return traffic from the NAT gateways to this AZ's private subnet crosses the same endpoint.
            aws.ec2.Route(
                f"{name}-return-{i}-via-firewall",
                route_table_id=placement.nat_route_table_id,
                destination_cidr_block=private_cidr,
                vpc_endpoint_id=endpoint,
                opts=child,
            )
        return firewall.arn
