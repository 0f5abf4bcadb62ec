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

In a VPC this program creates, each private route table's default route is one `aws.ec2.Route`
owned here, whatever the mode: its target is the AZ's NAT gateway without a firewall and the AZ's
firewall endpoint with one. Switching modes therefore updates the route in place (EC2 ReplaceRoute);
two differently named routes for the same destination would make the switch fail with
RouteAlreadyExists (EC2 CreateRoute: one route per destination in a table).
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
# references), so it is fixed generously.
RULE_GROUP_CAPACITY = 200
_TARGET_TYPES = ("TLS_SNI", "HTTP_HOST")


def domain_list_capacity(domains: int) -> int:
    """Capacity a domain-list rule group of `domains` consumes: one unit per domain and inspected
    protocol plus one per protocol (AWS's "StatefulRules capacity exceeded" starts at 100 domains in a
    100-unit HTTP-only group: https://cloudnetworks.io/2021-09-22-suricata-notes; the AWS guide,
    nwfw-rule-group-capacity, only says to leave room)."""
    return (domains + 1) * len(_TARGET_TYPES)


MAX_FIREWALL_DOMAINS = RULE_GROUP_CAPACITY // len(_TARGET_TYPES) - 1
"""The most domains the fixed capacity holds (99)."""

# The host name each AWS API answers on in a region (https://docs.aws.amazon.com/general/latest/gr/rande.html).
# Behind the firewall an API the stack lists in `network.egress.aws_apis` is allowed by this name
# unless an interface endpoint with private DNS keeps it inside the VPC. The EKS cluster API is the
# private endpoint (in-VPC) and S3 goes through the gateway endpoint, so neither is listed.
AWS_SERVICE_DOMAINS: Mapping[str, str] = {
    "ecr.api": "api.ecr.{region}.amazonaws.com",
    "ecr.dkr": ".dkr.ecr.{region}.amazonaws.com",
    "sts": "sts.{region}.amazonaws.com",
    "ec2": "ec2.{region}.amazonaws.com",
    "logs": "logs.{region}.amazonaws.com",
    "eks": "eks.{region}.amazonaws.com",
    "elasticloadbalancing": "elasticloadbalancing.{region}.amazonaws.com",
    "autoscaling": "autoscaling.{region}.amazonaws.com",
    "ssm": "ssm.{region}.amazonaws.com",
    "ssmmessages": "ssmmessages.{region}.amazonaws.com",
    "ec2messages": "ec2messages.{region}.amazonaws.com",
    "secretsmanager": "secretsmanager.{region}.amazonaws.com",
}
MASTER_SECRET_APIS = ("sts", "secretsmanager")
"""What a listener reading the RDS-managed master secret calls: STS's regional endpoint (IRSA's
AssumeRoleWithWebIdentity, AWS_STS_REGIONAL_ENDPOINTS=regional) and Secrets Manager (GetSecretValue)."""

RDS_TRUSTSTORE_DOMAIN = "truststore.pki.rds.amazonaws.com"
"""Where the listener's pod fetches the RDS CA bundle at start (components.listener, managed stores)."""

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
    langsmith: LangSmith,
    egress: Egress,
    *,
    region: str,
    interface_endpoints: Sequence[str],
    rds_truststore: bool = False,
    master_secret: bool = False,
) -> EgressAllowlist:
    """Compute the allowlist: pure, so tests compare it against `listener.regions` directly.
    `rds_truststore`: the stack's listeners use managed RDS stores and fetch its CA bundle.
    `master_secret`: they read the RDS master password from Secrets Manager (`MASTER_SECRET_APIS`)."""
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
                {
                    AWS_SERVICE_DOMAINS[service].format(region=region)
                    for service in (*egress.aws_apis, *(MASTER_SECRET_APIS if master_secret else ()))
                    if service not in interface_endpoints
                }
            )
        )
        truststore = [RDS_TRUSTSTORE_DOMAIN] if rds_truststore else []
        firewall_domains = tuple(sorted({*langsmith.hosts, *extra_domains, *aws_domains, *truststore}))
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


def firewall_log_group(name: str) -> str:
    return f"/aws/vendedlogs/network-firewall/{name}/alert"


def _slug(cidr: str, port: int) -> str:
    return f"{cidr.replace('.', '-').replace('/', '-')}-{port}"


@dataclass(frozen=True)
class PrivateRouting:
    """The private subnets' routing, provided by `Network` when it creates the VPC.

    Index i of every sequence belongs to the i-th availability zone.
    """

    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    private_route_table_ids: Sequence[pulumi.Input[str]]
    private_subnet_cidrs: Sequence[str]
    nat_gateway_ids: Sequence[pulumi.Input[str]]
    """The NAT gateway each AZ's traffic leaves through (the same one repeated with a single NAT)."""
    nat_route_table_id: pulumi.Input[str]
    firewall_subnet_ids: Sequence[pulumi.Input[str]] = ()
    """One per AZ; empty unless the egress mode uses the firewall."""


@dataclass(frozen=True)
class ControlPlaneEgressArgs:
    allowlist: EgressAllowlist
    vpc_id: pulumi.Input[str]
    tags: Mapping[str, str]
    routing: PrivateRouting | None = None
    """The private route tables to route (create mode); required when the mode uses the firewall."""
    firewall_log_retention_days: int = 90
    delete_protection: bool = False
    """The firewall's own deletion protection (on in prod)."""


class ControlPlaneEgress(pulumi.ComponentResource):
    allowlist: EgressAllowlist
    security_group_id: pulumi.Output[str] | None
    """Attach to the nodes (with the cluster security group); None unless the mode uses it."""
    firewall_arn: pulumi.Output[str] | None
    routes: list[aws.ec2.Route]
    """The private subnets' default routes and the firewall's return routes: the nodes' way out. Nodes
    must not boot before these exist (their first EC2/STS/ECR calls would go nowhere)."""

    def __init__(
        self, name: str, args: ControlPlaneEgressArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("langsmith:infra:ControlPlaneEgress", name, None, opts)
        self._name = name
        self._tags = dict(args.tags)
        self.allowlist = args.allowlist
        self.security_group_id = None
        self.firewall_arn = None
        self.routes = []
        if uses_security_group(args.allowlist.mode):
            self.security_group_id = self._security_group(args)
        endpoints: list[pulumi.Output[str]] | None = None
        if uses_firewall(args.allowlist.mode):
            if args.routing is None or not args.routing.firewall_subnet_ids:
                raise ValueError(
                    f"egress mode {args.allowlist.mode!r} needs the firewall subnets of a created VPC"
                )
            firewall = self._firewall(args.routing, args.firewall_log_retention_days, args.delete_protection)
            self.firewall_arn = firewall.arn
            endpoints = [
                pulumi.Output.all(firewall.firewall_statuses, subnet_id).apply(
                    lambda values: endpoint_for_subnet(values[0], values[1])
                )
                for subnet_id in args.routing.firewall_subnet_ids
            ]
        if args.routing is not None:
            self._private_routes(args.routing, endpoints)
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

    def _private_routes(
        self, routing: PrivateRouting, firewall_endpoints: Sequence[pulumi.Output[str]] | None
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        for i, table_id in enumerate(routing.private_route_table_ids):
            # One route per table in every mode; only its target changes (see the module docstring).
            target = (
                {"vpc_endpoint_id": firewall_endpoints[i]}
                if firewall_endpoints is not None
                else {"nat_gateway_id": routing.nat_gateway_ids[i]}
            )
            route = aws.ec2.Route(
                f"{self._name}-private-{i}-default",
                route_table_id=table_id,
                destination_cidr_block="0.0.0.0/0",
                opts=child,
                **target,  # type: ignore[arg-type]
            )
            self.routes.append(route)
        if firewall_endpoints is None:
            return
        for i, (endpoint, private_cidr) in enumerate(
            zip(firewall_endpoints, routing.private_subnet_cidrs, strict=True)
        ):
            # Return traffic from the NAT gateways to this AZ's private subnet crosses the same endpoint.
            route = aws.ec2.Route(
                f"{self._name}-return-{i}-via-firewall",
                route_table_id=routing.nat_route_table_id,
                destination_cidr_block=private_cidr,
                vpc_endpoint_id=endpoint,
                opts=child,
            )
            self.routes.append(route)

    def _firewall(
        self, placement: PrivateRouting, retention_days: int, delete_protection: bool
    ) -> aws.networkfirewall.Firewall:
        name = self._name
        domains = list(self.allowlist.firewall_domains)
        if domain_list_capacity(len(domains)) > RULE_GROUP_CAPACITY:
            # components.rules refuses such a stack first, naming the key; this guards other callers.
            raise ValueError(
                f"{len(domains)} firewall domains exceed the rule group's fixed capacity "
                f"({MAX_FIREWALL_DOMAINS} domains)"
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
            delete_protection=delete_protection,
            tags=self._tagged(f"{name}-firewall"),
            opts=child,
        )
        # Dropped flows are what a reviewer needs to see when something stops working. Under
        # /aws/vendedlogs/: AWS then needs no log-group resource policy entry per firewall, whose 5,120
        # character limit otherwise makes logging configurations fail once several exist
        # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/AWS-logs-and-resource-policy.html).
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-alerts",
            name=firewall_log_group(name),
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

        return firewall
