"""The stack's secret keys as Pulumi secret Outputs (they never enter `StackConfig`).

`components.load` has already checked that every secret this configuration needs is set; here they
are only read, each wrapped so it stays a secret wherever it flows (Kubernetes Secrets, the
registration's inputs) and shows as `<secret>` in any plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
from pulumi.runtime import config as runtime_config

from components.config import PROJECT
from components.load import (
    API_KEY,
    KUBECONFIG,
    POSTGRES_ADMIN_URI,
    REDIS_ADMIN_URI,
    WORKSPACE_API_KEYS,
    workspace_key_names,
)


@dataclass(frozen=True)
class StackSecrets:
    api_key: pulumi.Output[str] | None = None
    workspace_keys: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    kubeconfig: pulumi.Output[str] | None = None
    postgres_admin_uri: pulumi.Output[str] | None = None
    redis_admin_uri: pulumi.Output[str] | None = None

    def api_key_for(self, workspace: str) -> tuple[pulumi.Output[str], str]:
        """The workspace's key and the stack key it comes from (for messages and the registration)."""
        if workspace in self.workspace_keys:
            return self.workspace_keys[workspace], f"{WORKSPACE_API_KEYS}.{workspace}"
        if self.api_key is None:
            raise ValueError(f"no API key for workspace '{workspace}' (components.load checks this first)")
        return self.api_key, API_KEY


def read_stack_secrets() -> StackSecrets:
    cfg = pulumi.Config(PROJECT)
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    names = workspace_key_names(raw.get(f"{PROJECT}:{WORKSPACE_API_KEYS}", ""))
    all_keys = cfg.get_secret_object(WORKSPACE_API_KEYS) if names else None
    workspace_keys = {
        name: pulumi.Output.secret(all_keys.apply(lambda keys, n=name: str(keys[n])))  # type: ignore[union-attr,index]
        for name in sorted(names)
    }
    return StackSecrets(
        api_key=cfg.get_secret(API_KEY),
        workspace_keys=workspace_keys,
        kubeconfig=cfg.get_secret(KUBECONFIG),
        postgres_admin_uri=cfg.get_secret(POSTGRES_ADMIN_URI),
        redis_admin_uri=cfg.get_secret(REDIS_ADMIN_URI),
    )
