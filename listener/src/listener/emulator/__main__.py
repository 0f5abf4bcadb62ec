"""`python -m listener.emulator [--host H] [--port P] [--db FILE] [--api-key K] [--tenant-id T]`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import uvicorn

from listener.emulator.app import Emulator

__all__ = ["main"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m listener.emulator",
        description="Serve an emulated LangSmith Deployment Control Plane API (/v2 listeners, deployments).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8900, help="port to bind, 0 = any free port (default: 8900)"
    )
    parser.add_argument("--db", metavar="FILE", help="SQLite file: keep the data (and key) across restarts")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LANGSMITH_EMULATOR_API_KEY"),
        help="the accepted X-Api-Key (default: $LANGSMITH_EMULATOR_API_KEY, else generated)",
    )
    parser.add_argument("--tenant-id", help="the workspace UUID (default: generated)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        emulator = Emulator(api_key=args.api_key, tenant_id=args.tenant_id, db_path=args.db)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(emulator, host=args.host, port=args.port, log_level="info", lifespan="off")
    server = uvicorn.Server(config)

    # Printed once the socket is bound, so the URL carries the real port (also with --port 0).
    original_startup = server.startup

    async def startup(sockets: object = None) -> None:
        await original_startup(sockets)  # type: ignore[arg-type]
        if server.started:
            host, port = server.servers[0].sockets[0].getsockname()[:2]
            print(
                "LangSmith control-plane emulator\n"
                f"  LISTENER_CONTROL_PLANE_URL=http://{host}:{port}\n"
                f"  LISTENER_API_KEY={emulator.api_key}\n"
                f"  LISTENER_WORKSPACE_ID={emulator.tenant_id}\n"
                f"  data: {args.db or 'in memory (lost on exit)'}",
                flush=True,
            )

    server.startup = startup  # type: ignore[method-assign]
    try:
        server.run()
    finally:
        emulator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
