"""Shape a `tools.fakekube.FakeKube` like the cluster a test needs, without editing the fake.

* Every conformant API server serves `networking.k8s.io/v1` NetworkPolicy (GA since Kubernetes 1.7);
  today's fakekube does not (issue 9 is making it strict and will). Until it does, the listener's
  tests add the kind to their fake's table — more like a real cluster, never more lenient.
* A cluster without the Gateway API or KEDA CRDs does not serve HTTPRoute or ScaledObject: discovery
  leaves them out and requests for them answer 404, as a real API server does.
"""

from __future__ import annotations

from collections.abc import Iterable

from tools.fakekube import FakeKube
from tools.fakekube.kinds import Kind, KindRegistry

NETWORK_POLICY = Kind("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", status=False)
CRD_KINDS = frozenset({"HTTPRoute", "ScaledObject"})


def like_a_real_cluster(kube: FakeKube, *, crds: Iterable[str] = CRD_KINDS) -> FakeKube:
    """Serve NetworkPolicy; serve only the CRD-backed kinds in `crds`."""
    installed = set(crds)
    kinds = [k for k in kube.store.registry.kinds if k.kind not in CRD_KINDS or k.kind in installed]
    if not any(k.kind == NETWORK_POLICY.kind for k in kinds):
        kinds.append(NETWORK_POLICY)
    kube.store.registry = KindRegistry(tuple(kinds))
    return kube
