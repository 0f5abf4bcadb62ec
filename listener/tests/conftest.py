from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from e2e import kube, servers, world  # noqa: F401 -- the end-to-end fixtures, for every module

# Fixtures of the managed-store tests (real PostgreSQL and Redis), shared by several modules.
from managed_support import private_postgres, private_tracked, tracked  # noqa: F401

from listener.controlplane import ControlPlaneClient, ControlPlaneConfig, RetryPolicy
from listener.emulator import BackgroundServer, Emulator

API_KEY = "lsv2_test_key_0123456789abcdef"


@dataclass
class Sleeps:
    """Records the waits the client asks for instead of sleeping (tests assert the schedule, never wait)."""

    calls: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture(scope="session")
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(Emulator(api_key=API_KEY)) as srv:
        yield srv


@pytest.fixture
def emulator(server: BackgroundServer) -> Iterator[Emulator]:
    emu = server.emulator
    emu.faults.clear()
    emu.requests.clear()
    for table in (emu.store.listeners, emu.store.deployments, emu.store.revisions):
        table.clear()
    emu.store.settings.__init__()  # back to the defaults
    yield emu
    emu.faults.clear()


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(server: BackgroundServer, sleeps: Sleeps) -> Iterator[object]:
    clients: list[ControlPlaneClient] = []

    def make(**overrides: object) -> ControlPlaneClient:
        settings: dict[str, object] = {
            "base_url": server.url,
            "api_key": API_KEY,
            "tenant_id": server.emulator.tenant_id,
            "retry": RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=8.0, max_retry_after=30.0),
        }
        settings.update(overrides)
        client = ControlPlaneClient(ControlPlaneConfig(**settings), sleep=sleeps, random=lambda: 0.5)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def client(make_client: object) -> ControlPlaneClient:
    return make_client()  # type: ignore[operator]


@pytest.fixture
def validate():
    """Strict schema + semantic validation of one rendered object; returns the list of errors."""
    from manifest_validation import validate_object

    return validate_object
