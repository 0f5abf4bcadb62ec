"""`python -m listener`: the service loop (desired state, rendering, apply) is a later issue; this says so
and exits 2."""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "langsmith-dataplane listener: the service loop is not implemented yet. "
        "Available now: the control-plane client (listener.controlplane) and the emulator "
        "(python -m listener.emulator).",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
