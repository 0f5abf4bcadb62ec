"""The work queue on its own: keys are de-duplicated, a key never runs twice at once, the depth is
exported, and the retry schedule backs off with jitter under a Retry-After floor. Synchronised on
events; every wait is bounded."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from listener import metrics
from listener.reconcile.queue import WorkQueue, retry_delay

WAIT = 10.0


def _depth() -> float:
    return metrics.QUEUE_DEPTH._value.get()


def test_retry_delay_doubles_with_jitter_and_is_capped() -> None:
    base, cap = timedelta(seconds=2), timedelta(seconds=60)
    highs = [retry_delay(n, base, cap, rng=lambda: 1.0) for n in range(1, 8)]
    lows = [retry_delay(n, base, cap, rng=lambda: 0.0) for n in range(1, 8)]
    assert [d.total_seconds() for d in highs] == [2, 4, 8, 16, 32, 60, 60]
    assert [d.total_seconds() for d in lows] == [1, 2, 4, 8, 16, 30, 30], "never below half: no hot loop"


def test_retry_after_is_a_floor_but_capped() -> None:
    base, cap = timedelta(seconds=2), timedelta(seconds=60)
    assert retry_delay(1, base, cap, retry_after=40, rng=lambda: 1.0) == timedelta(seconds=40)
    assert retry_delay(1, base, cap, retry_after=0.5, rng=lambda: 1.0) == timedelta(seconds=2)
    assert retry_delay(1, base, cap, retry_after=86_400, rng=lambda: 0.0) == cap
    for absurd in (1e30, float("inf"), float(10**300)):  # a header no timedelta can hold
        assert retry_delay(1, base, cap, retry_after=absurd, rng=lambda: 0.0) == cap


def test_a_key_is_never_queued_twice_nor_run_by_two_workers() -> None:
    work = WorkQueue(4)
    started, release = threading.Event(), threading.Event()
    running = []

    def step() -> str:
        running.append(1)
        started.set()
        release.wait(WAIT)
        return "done"

    try:
        assert work.submit("a", step)
        assert started.wait(WAIT)
        assert not work.submit("a", step), "already running: not queued again"
        assert work.busy() == {"a"}
        release.set()
        assert work.wait(["a"], WAIT)
        assert [(d.key, d.value) for d in work.take()] == [("a", "done")]
        assert running == [1]
        assert work.submit("a", lambda: "again"), "finished: may be queued again"
        assert work.wait(["a"], WAIT)
    finally:
        release.set()
        work.close(WAIT)


def test_the_depth_counts_items_waiting_for_a_worker() -> None:
    work = WorkQueue(1)
    started, release = threading.Event(), threading.Event()

    def blocker() -> None:
        started.set()
        release.wait(WAIT)

    try:
        work.submit("a", blocker)
        assert started.wait(WAIT)
        work.submit("b", lambda: None)
        work.submit("c", lambda: None)
        assert _depth() == 2, "one running, two waiting"
        release.set()
        assert work.wait(["a", "b", "c"], WAIT)
        assert _depth() == 0
    finally:
        release.set()
        work.close(WAIT)


def test_a_failing_item_is_reported_not_lost() -> None:
    work = WorkQueue(2)

    def boom() -> None:
        raise RuntimeError("boom")

    try:
        work.submit("a", boom)
        assert work.wait(["a"], WAIT)
        (done,) = work.take()
        assert isinstance(done.error, RuntimeError)
        assert work.idle
    finally:
        work.close(WAIT)


def test_close_drops_queued_items_and_abandons_a_stuck_one() -> None:
    work = WorkQueue(1)
    started, release = threading.Event(), threading.Event()
    ran = []

    def stuck() -> None:
        started.set()
        release.wait(WAIT)

    work.submit("a", stuck)
    assert started.wait(WAIT)
    work.submit("b", lambda: ran.append("b"))
    assert not work.close(0.05), "the stuck item is abandoned to its daemon thread"
    assert not work.submit("c", lambda: None), "closed: nothing new"
    release.set()
    assert work.wait(["a"], WAIT)
    assert ran == [], "a queued item that had not started is dropped"


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        WorkQueue(0)


def test_urgent_work_is_taken_before_the_rest_and_a_queued_key_can_be_promoted() -> None:
    work = WorkQueue(1)
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def blocker() -> None:
        started.set()
        release.wait(WAIT)

    try:
        work.submit("block", blocker)
        assert started.wait(WAIT)
        for key in ("resync-1", "resync-2", "resync-3"):
            assert work.submit(key, lambda key=key: order.append(key))
        assert work.submit("new-revision", lambda: order.append("new-revision"), urgent=True)
        assert not work.submit("resync-3", lambda: order.append("other work"), urgent=True), (
            "queued: promoted"
        )
        assert not work.submit("block", lambda: order.append("again"), urgent=True), "running: unchanged"
        assert _depth() == 4
        release.set()
        assert work.wait(["resync-1", "resync-2", "resync-3", "new-revision"], WAIT)
        assert order == ["new-revision", "resync-3", "resync-1", "resync-2"]
    finally:
        release.set()
        work.close(WAIT)


def test_a_finished_rollouts_waves_are_packed_and_read_back_unchanged() -> None:
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_render import make_spec

    from listener import naming
    from listener.reconcile.unit import Attempt
    from listener.render import RenderOptions, render

    waves = render(make_spec(), RenderOptions(run_as_non_root=True))
    names = naming.ObjectNames.of("alpha", "00000000-0000-0000-0000-000000000001")
    attempt = Attempt(fingerprint=("f",), revision_id="r", names=names, started=None, phase="deployed")  # type: ignore[arg-type]
    attempt.waves = waves
    before = json.dumps([(w.index, w.name, w.objects) for w in waves], sort_keys=True)
    attempt.pack()
    assert attempt._waves is None
    assert attempt._packed is not None
    assert len(attempt._packed) < len(before) / 3
    restored = attempt.waves
    assert restored is not None
    assert json.dumps([(w.index, w.name, w.objects) for w in restored], sort_keys=True) == before
    assert all(isinstance(w.objects, tuple) for w in restored)
    secrets = [o for w in waves for o in w.objects if o["kind"] == "Secret" and o.get("data")]
    assert secrets, "the render carries Secret data"
    for secret in secrets:
        for value in secret["data"].values():
            assert value not in repr(attempt), "waves hold passwords: never in a repr"
