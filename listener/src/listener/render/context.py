"""What every renderer needs: the spec, the options, the names, and the metadata builder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from listener import naming
from listener.spec import AgentServerSpec, RenderOptions

COMPONENT_API = "api-server"
COMPONENT_QUEUE = "queue"
COMPONENT_POSTGRES = "postgres"
COMPONENT_REDIS = "redis"
COMPONENT_CONFIG = "config"
COMPONENT_ROUTING = "routing"
COMPONENT_MANAGED_STORES = "managed-stores"
"""The credentials Secret of a deployment on the managed stores (how rotate-credentials finds it)."""
MANAGED_CA_KEY = "postgres-ca.pem"
"""Key of the credentials Secret holding the CA bundle the listener verifies PostgreSQL with (the
admin URI's `sslrootcert` file, e.g. the RDS bundle), when it names one."""
MANAGED_CA_DIR = "/etc/langsmith-dataplane/stores"
"""Where Agent Server pods have that key as a file; their `POSTGRES_URI_CUSTOM` points at it."""

API_PORT = 8000
POSTGRES_PORT = 5432
REDIS_PORT = 6379
POSTGRES_USER = "postgres"
POSTGRES_DB = "postgres"


class RenderError(ValueError):
    """The spec/options cannot be rendered (e.g. in-cluster stores without a Postgres password)."""


@dataclass(frozen=True)
class Context:
    spec: AgentServerSpec
    options: RenderOptions
    names: naming.ObjectNames

    @classmethod
    def of(cls, spec: AgentServerSpec, options: RenderOptions) -> Context:
        return cls(spec, options, naming.ObjectNames.of(spec.deployment_name, spec.deployment_id))

    @property
    def in_cluster_stores(self) -> bool:
        return self.options.store_mode == "in-cluster"

    @property
    def managed_stores(self) -> bool:
        return self.options.store_mode == "managed"

    def selector(self, component: str) -> dict[str, str]:
        return naming.selector_labels(self.names.base, component, self.spec.deployment_id)

    def labels(self, component: str) -> dict[str, str]:
        ours = naming.ownership_labels(
            instance=self.names.base,
            component=component,
            listener_id=self.spec.listener_id,
            deployment_id=self.spec.deployment_id,
            revision_id=self.spec.revision_id,
        )
        return naming.merge_labels(dict(self.spec.resources.labels), ours)

    def stable_labels(self, component: str) -> dict[str, str]:
        """Ownership labels without the revision id: for store pod templates (a new app revision must
        not restart the database) and PVC templates (immutable once created). User labels are left
        out for the same reasons."""
        ours = naming.ownership_labels(
            instance=self.names.base,
            component=component,
            listener_id=self.spec.listener_id,
            deployment_id=self.spec.deployment_id,
            revision_id="",
        )
        return {k: v for k, v in ours.items() if k != naming.LABEL_REVISION_ID}

    def annotations(self) -> dict[str, str]:
        """ResourceSpec annotations apply to every object (like the LGP CRD's `spec.annotations`);
        our own keys win."""
        user = {k: v for k, v in self.spec.resources.annotations if not k.startswith("langsmith-dataplane/")}
        return {**user, naming.ANNOTATION_DEPLOYMENT_NAME: self.spec.deployment_name}

    def metadata(self, name: str, component: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.spec.namespace,
            "labels": self.labels(component),
            "annotations": self.annotations(),
        }

    def service_host(self, service: str) -> str:
        return f"{service}.{self.spec.namespace}.svc.{self.options.cluster_domain}"
