"""Wire the components of one stack together. Called by `__main__.py`; returns the stack outputs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.config import StackConfig


def build(config: StackConfig) -> dict[str, object]:
    # Tags go on each resource rather than the provider's default_tags, so the policy pack can see
    # them in every resource's inputs.
    aws_provider = aws.Provider(f"{config.name}-aws", region=config.aws_region)
    del aws_provider  # handed to the AWS components as they land
    return {
        "environment": config.environment,
        "controlPlaneUrl": config.langsmith.control_plane_url,
        "controlPlaneHosts": list(config.langsmith.hosts),
        "listeners": [
            {
                "name": listener.name,
                "workspace": listener.workspace,
                "computeId": listener.compute_id,
                "namespaces": list(listener.namespaces),
            }
            for listener in config.topology.listeners
        ],
        "stack": pulumi.get_stack(),
    }
