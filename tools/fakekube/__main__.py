"""Serve the fake API server for local trials: ``python -m tools.fakekube --port 8901 --namespaces a,b``."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

import yaml

from tools.fakekube.server import FakeKube


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.fakekube", description=__doc__)
    parser.add_argument("--port", type=int, default=8901)
    parser.add_argument(
        "--namespaces", default="default", help="comma-separated namespaces the client may use"
    )
    parser.add_argument(
        "--manual", action="store_true", help="controller in manual mode (POST /_fake/controller/step)"
    )
    parser.add_argument(
        "--unrestricted", action="store_true", help="allow every namespace and cluster-wide lists"
    )
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for kubectl here")
    args = parser.parse_args()
    kube = FakeKube(
        [n.strip() for n in args.namespaces.split(",") if n.strip()],
        auto=not args.manual,
        restrict_namespaces=not args.unrestricted,
    )
    kube.start(args.port)
    if args.kubeconfig:
        args.kubeconfig.write_text(yaml.safe_dump(kube.kubeconfig_dict()))
    print(
        f"fakekube serving on {kube.url} (namespaces: {', '.join(kube.namespaces)}); Ctrl-C stops it",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    kube.stop()


if __name__ == "__main__":
    main()
