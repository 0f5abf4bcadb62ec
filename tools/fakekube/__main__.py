"""Serve the fake API server for local trials: ``python -m tools.fakekube --port 8901 --namespaces a,b``.

``--kubeconfig`` gets the listener ServiceAccount's identity (RBAC from ``listener.kube``'s access
table, like the real cluster); ``--admin-kubeconfig`` gets ``system:masters`` for setup with kubectl.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

import yaml

from tools.fakekube.crds import BUNDLED
from tools.fakekube.server import FakeKube


def _image_user(text: str) -> tuple[str, str]:
    image, sep, user = text.rpartition("=")
    if not sep or not image or not user:
        raise argparse.ArgumentTypeError(f"expected IMAGE=UID, got {text!r}")
    return image, user


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.fakekube", description=__doc__)
    parser.add_argument("--port", type=int, default=8901)
    parser.add_argument(
        "--namespaces", default="default", help="comma-separated namespaces the listener may use"
    )
    parser.add_argument(
        "--manual", action="store_true", help="controller in manual mode (POST /_fake/controller/step)"
    )
    parser.add_argument(
        "--unrestricted", action="store_true", help="--kubeconfig gets the admin identity (no RBAC)"
    )
    parser.add_argument(
        "--crds", default="", help=f"comma-separated bundled CRDs to install ({', '.join(sorted(BUNDLED))})"
    )
    parser.add_argument(
        "--image-user",
        type=_image_user,
        action="append",
        default=[],
        metavar="IMAGE=UID",
        help="the numeric USER an image declares (the kubelet checks runAsNonRoot against it; default 0)",
    )
    parser.add_argument("--kubeconfig", type=Path, help="write the default identity's kubeconfig here")
    parser.add_argument("--admin-kubeconfig", type=Path, help="write a system:masters kubeconfig here")
    args = parser.parse_args()
    kube = FakeKube(
        [n.strip() for n in args.namespaces.split(",") if n.strip()],
        auto=not args.manual,
        restrict_namespaces=not args.unrestricted,
        crds=[c.strip() for c in args.crds.split(",") if c.strip()],
    )
    for image, user in args.image_user:
        kube.controller.set_image_user(image, user)
    kube.start(args.port)
    if args.kubeconfig:
        args.kubeconfig.write_text(yaml.safe_dump(kube.kubeconfig_dict()))
    if args.admin_kubeconfig:
        args.admin_kubeconfig.write_text(yaml.safe_dump(kube.kubeconfig_dict(identity=kube.admin)))
    print(
        f"fakekube serving on {kube.url} (namespaces: {', '.join(kube.namespaces)}; "
        f"default identity {kube.default_identity.name}); Ctrl-C stops it",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    kube.stop()


if __name__ == "__main__":
    main()
