"""A fake Kubernetes API server for listener tests: real HTTP, real lightkube, a controllable controller.

See README.md in this folder.
"""

from tools.fakekube.controller import FakeController, PodBehaviour, PodState
from tools.fakekube.errors import ApiStatusError
from tools.fakekube.observe import DROP, Fault, Faults, RequestLog, RequestRecord
from tools.fakekube.server import FakeKube
from tools.fakekube.store import Store

__all__ = [
    "DROP",
    "ApiStatusError",
    "FakeController",
    "FakeKube",
    "Fault",
    "Faults",
    "PodBehaviour",
    "PodState",
    "RequestLog",
    "RequestRecord",
    "Store",
]
