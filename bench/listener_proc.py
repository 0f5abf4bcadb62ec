"""`python -m listener` with a per-cycle probe: the benchmark's listener process.

    python -m bench.listener_proc CYCLES.jsonl      # settings from LISTENER_* as for `python -m listener`

The listener runs exactly as `python -m listener` does (same settings, same defaults, same code);
the only addition is a `{"begin": time}` line when a cycle starts and one JSON line when it ends, appended to CYCLES.jsonl: wall-clock start
and end, the process's CPU time at both (all threads: the loop, the health server, garbage
collection), the listener's own counters of control-plane and Kubernetes requests at both, and
whether the cycle was a resync. The probe wraps `listener.service.Service.cycle`; when a future
loop no longer has it, the benchmark still measures cold start, reaction and RSS from the servers'
side and says the per-cycle figures are missing.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from listener import metrics, service

_MISSING = object()


def _counts(counter: Any, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = sample.labels[label]
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _rss_kib() -> int | None:
    """The process's resident memory now (VmRSS), to see when it grows; None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def install(path: str) -> None:
    original = getattr(service.Service, "cycle", None)
    if original is None:
        print("bench.listener_proc: no Service.cycle to probe; no per-cycle figures", file=sys.stderr)
        return
    lock = threading.Lock()
    out = open(path, "a", buffering=1)  # noqa: SIM115 -- one line per cycle for the process's life

    def cycle(self: service.Service, *args: Any, **kwargs: Any) -> Any:
        # `_last_resync` is the reconciler's own clock of resyncs; absent in another loop, the flag is null.
        before = getattr(self.reconciler, "_last_resync", _MISSING)
        record: dict[str, Any] = {
            "start": time.time(),
            "cpu_start": time.process_time(),
            "cp_start": sum(_counts(metrics.CONTROL_PLANE_REQUESTS, "method").values()),
            "k8s_start": _counts(metrics.KUBERNETES_REQUESTS, "verb"),
            "poll": kwargs.get("poll", True),
        }
        with lock:  # the benchmark starts its new revisions on this mark
            out.write(json.dumps({"begin": record["start"]}) + "\n")
        try:
            return original(self, *args, **kwargs)
        finally:
            after = getattr(self.reconciler, "_last_resync", _MISSING)
            record.update(
                end=time.time(),
                cpu_end=time.process_time(),
                cp_end=sum(_counts(metrics.CONTROL_PLANE_REQUESTS, "method").values()),
                k8s_end=_counts(metrics.KUBERNETES_REQUESTS, "verb"),
                resync=None if after is _MISSING else (after is not before and after is not None),
                rss_kib=_rss_kib(),
            )
            with lock:
                out.write(json.dumps(record) + "\n")

    service.Service.cycle = cycle  # type: ignore[method-assign]


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: python -m bench.listener_proc CYCLES.jsonl [listener arguments]", file=sys.stderr)
        return 2
    install(sys.argv[1])
    from listener.__main__ import main as listener_main

    return listener_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
