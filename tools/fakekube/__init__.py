"""A fake Kubernetes API server for listener tests: real HTTP, real lightkube, real RBAC, strict validation.

See README.md in this folder.
"""

from tools.fakekube.controller import FakeController, PodBehaviour, PodState
from tools.fakekube.errors import ApiStatusError
from tools.fakekube.kubelet import NodeSpec
from tools.fakekube.observe import DROP, Fault, Faults, RequestLog, RequestRecord
from tools.fakekube.server import FakeKube, Identity
from tools.fakekube.store import Store

__all__ = [
    "DROP",
    "ApiStatusError",
    "FakeController",
    "FakeKube",
    "Fault",
    "Faults",
    "Identity",
    "NodeSpec",
    "PodBehaviour",
    "PodState",
    "RequestLog",
    "RequestRecord",
    "Store",
]
