"""An emulator of the LangSmith Deployment Control Plane API, for tests and local use (not for production)."""

from listener.emulator.app import DATAPLANE_PREFIX, Emulator, RequestRecord
from listener.emulator.faults import Fault, FaultRegistry
from listener.emulator.server import BackgroundServer
from listener.emulator.store import Settings

__all__ = [
    "DATAPLANE_PREFIX",
    "BackgroundServer",
    "Emulator",
    "Fault",
    "FaultRegistry",
    "RequestRecord",
    "Settings",
]
