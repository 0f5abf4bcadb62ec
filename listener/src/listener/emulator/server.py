"""Run an emulator on a real loopback socket in a background thread (tests, local tools)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn

from listener.emulator.app import Emulator

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """`with BackgroundServer(emulator) as server: server.url`: uvicorn on 127.0.0.1, port 0 = OS picks."""

    def __init__(
        self, emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 10.0
    ):
        self.emulator = emulator
        config = uvicorn.Config(
            emulator, host=host, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="emulator-server", daemon=True)
        self._start_timeout = start_timeout
        self.url = ""

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        # uvicorn offers a flag, not an event; poll it with a deadline (bounded, not a blind sleep).
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the emulator server thread exited before it started listening")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator server did not start within {self._start_timeout}s")
            time.sleep(0.01)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise RuntimeError("the emulator server did not stop within 10s")

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
