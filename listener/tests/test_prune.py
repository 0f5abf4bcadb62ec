"""The prune rules as a pure table (`listener.reconcile.prune.decide`) and as a property: whatever the
control plane and the cluster say, a deployment's objects are pruned only when every rule holds.

The end-to-end fault combinations (the same rules over real HTTP) are in test_safety_e2e.py.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from listener.reconcile.config import PrunePolicy
from listener.reconcile.fetch import Confirmation, documented_not_found
from listener.reconcile.prune import STREAK_GAP, Candidate, Decision, Mark, decide, is_data

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=5)
POLICY = PrunePolicy(window=WINDOW, max_fraction=0.1, allow_empty=False)
A, B, C, D = (UUID(f"00000000-0000-4000-8000-00000000000{i}") for i in range(1, 5))
DELETED = Confirmation("deleted", "the control plane answered that it does not exist")
PRESENT = Confirmation("present", "the control plane still has it here", "agents")
ELSEWHERE = Confirmation("present", "placed", "agents-b")
MOVED = Confirmation("moved", "the control plane now places it elsewhere")
UNKNOWN = Confirmation("unknown", "a 404 without the control plane's own not-found body proves nothing")


def mark(minutes_ago: float, *, last_minutes_ago: float | None = None, verdict: str = "deleted") -> Mark:
    since = NOW - timedelta(minutes=minutes_ago)
    last = NOW - timedelta(minutes=minutes_ago if last_minutes_ago is None else last_minutes_ago)
    return Mark(since, last, verdict)


def group(
    deployment: UUID, *, listed: bool = False, marked: Mark | None = None, ns: str = "agents"
) -> Candidate:
    return Candidate(deployment, ns, marked, listed)


def run(
    candidates: list[Candidate],
    confirmations: dict[UUID, Confirmation],
    *,
    listener_error: str | None = None,
    listed: int = 1,
    policy: PrunePolicy = POLICY,
) -> dict[UUID, Decision]:
    decisions = decide(
        candidates,
        now=NOW,
        policy=policy,
        listener_error=listener_error,
        listed_for_listener=listed,
        confirmations=confirmations,
    )
    return {d.key[0]: d for d in decisions}


KEEPER = group(D, listed=True)

# (case, candidates, confirmations, extra, {deployment: (action, refused rule)})
TABLE: list[
    tuple[str, list[Candidate], dict[UUID, Confirmation], dict[str, Any], dict[UUID, tuple[str, Any]]]
] = [
    (
        "listed: nothing to decide",
        [group(A, listed=True)],
        {},
        {},
        {},
    ),
    (
        "listed again after a streak: the mark is cleared",
        [group(A, listed=True, marked=mark(3))],
        {},
        {},
        {A: ("clear", None)},
    ),
    (
        "empty list, listener record not answered (wrong workspace): kept, marks untouched",
        [group(A, marked=mark(10)), group(B)],
        {},
        {"listener_error": "GET /v2/listeners/x failed: Not found (404)", "listed": 0},
        {A: ("keep", "listener"), B: ("keep", "listener")},
    ),
    (
        "short page: the GET still finds it",
        [group(A), KEEPER],
        {A: PRESENT},
        {},
        {A: ("keep", "present")},
    ),
    (
        "short page with a running streak: the streak ends",
        [group(A, marked=mark(4)), KEEPER],
        {A: PRESENT},
        {},
        {A: ("clear", "present")},
    ),
    (
        "404 without the control plane's body (a proxy): not evidence",
        [group(A, marked=mark(10)), KEEPER],
        {A: UNKNOWN},
        {},
        {A: ("keep", "unconfirmed")},
    ),
    (
        "documented 404, first seen: the window starts",
        [group(A), KEEPER],
        {A: DELETED},
        {},
        {A: ("mark", "window")},
    ),
    (
        "documented 404 inside the window (e.g. after a restart 2 min in)",
        [group(A, marked=mark(2)), KEEPER],
        {A: DELETED},
        {},
        {A: ("keep", "window")},
    ),
    (
        "inside the window, last observation old: refreshed",
        [group(A, marked=mark(4, last_minutes_ago=3)), KEEPER],
        {A: DELETED},
        {},
        {A: ("refresh", "window")},
    ),
    (
        "documented 404 past the window: pruned",
        [group(A, marked=mark(6, last_minutes_ago=1)), KEEPER],
        {A: DELETED},
        {},
        {A: ("prune", None)},
    ),
    (
        "a mark older than two windows without observations (a long outage): starts again",
        [group(A, marked=mark(60, last_minutes_ago=11)), KEEPER],
        {A: DELETED},
        {},
        {A: ("mark", "window")},
    ),
    (
        "a mark from the future (clock skew): starts again",
        [group(A, marked=mark(-5)), KEEPER],
        {A: DELETED},
        {},
        {A: ("mark", "window")},
    ),
    (
        "the verdict changed (deleted, now moved): starts again",
        [group(A, marked=mark(6)), KEEPER],
        {A: MOVED},
        {},
        {A: ("mark", "window")},
    ),
    (
        "control plane lists nothing for this listener (restore): allow-empty refuses",
        [group(A, marked=mark(6)), group(B, marked=mark(6))],
        {A: DELETED, B: DELETED},
        {"listed": 0},
        {A: ("keep", "allow-empty"), B: ("keep", "allow-empty")},
    ),
    (
        "the last deployment of the listener in the cluster: allow-empty refuses",
        [group(A, marked=mark(6))],
        {A: DELETED},
        {"listed": 1},
        {A: ("keep", "allow-empty")},
    ),
    (
        "allow_empty=true: the last one goes",
        [group(A, marked=mark(6))],
        {A: DELETED},
        {"listed": 0, "policy": PrunePolicy(window=WINDOW, allow_empty=True)},
        {A: ("prune", None)},
    ),
    (
        "moved to another listener, past the window: pruned as a move (data kept)",
        [group(A, marked=mark(6, verdict="moved")), KEEPER],
        {A: MOVED},
        {},
        {A: ("prune", None)},
    ),
    (
        "present in another namespace of this listener: a move",
        [group(A, marked=mark(6, verdict="moved")), group(A, listed=True, ns="agents-b")],
        {A: ELSEWHERE},
        {},
        {A: ("prune", None)},
    ),
]


@pytest.mark.parametrize(
    ("candidates", "confirmations", "extra", "expected"),
    [case[1:] for case in TABLE],
    ids=[case[0] for case in TABLE],
)
def test_prune_rule_table(
    candidates: list[Candidate],
    confirmations: dict[UUID, Confirmation],
    extra: dict[str, Any],
    expected: dict[UUID, tuple[str, Any]],
) -> None:
    decisions = run(candidates, confirmations, **extra)
    got = {k: (d.action, d.refused) for k, d in decisions.items() if d.key[1] != "agents-b"}
    assert got == expected
    for d in decisions.values():
        assert (d.refused is not None) == (d.action not in ("prune", "clear") or d.refused == "present")
        if d.refused:
            assert d.reason, "every refusal says why"


def test_moves_are_flagged_so_their_data_is_kept() -> None:
    decisions = run([group(A, marked=mark(6, verdict="moved")), KEEPER], {A: MOVED})
    assert decisions[A].action == "prune"
    assert decisions[A].moved


def test_the_cap_prunes_the_oldest_first_and_refuses_the_rest() -> None:
    ids = [UUID(f"00000000-0000-4000-8000-{i:012d}") for i in range(1, 21)]
    gone = ids[:5]
    candidates = [group(d, marked=mark(10 + i, last_minutes_ago=1)) for i, d in enumerate(gone)] + [
        group(d, listed=True) for d in ids[5:]
    ]
    decisions = run(candidates, dict.fromkeys(gone, DELETED), listed=15)
    pruned = [k for k, d in decisions.items() if d.action == "prune"]
    assert pruned == [gone[4], gone[3]], "20 deployments x 0.1 = 2 per cycle, longest absent first"
    capped = {k for k, d in decisions.items() if d.refused == "cap"}
    assert capped == set(gone[:3])
    assert "LISTENER_PRUNE_MAX_FRACTION" in decisions[gone[0]].reason


def test_mark_round_trips_and_an_unreadable_one_restarts_the_streak() -> None:
    m = mark(3)
    assert Mark.decode(m.encode()) == m
    for text in (None, "", "{", '{"since": "yesterday"}', "[]", '{"since": 1, "last": 2, "verdict": "x"}'):
        assert Mark.decode(text) is None


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        (f"Deployment ID {A} not found.", True),
        (f"Deployment ID {str(A).upper()} not found.", True),
        (f"Deployment ID {B} not found.", False),  # another deployment's answer
        ("Not Found", False),  # FastAPI's default, or a proxy
        ("<html><body>404 Not Found</body></html>", False),
        (None, False),
        ([{"loc": ["path"], "msg": "x", "type": "y"}], False),
        (f"Deployment ID {A} not found. Please retry", False),
    ],
)
def test_only_the_control_planes_own_not_found_body_counts(detail: object, expected: bool) -> None:
    # control-plane-api.md §4: 404 on /v2/deployments/{id} is {"detail": "Deployment ID {id} not found."}
    assert documented_not_found(detail, A) is expected


def test_data_is_the_volume_and_the_passwords() -> None:
    assert is_data("PersistentVolumeClaim", {"metadata": {"name": "x"}})
    assert is_data("Secret", {"metadata": {"name": "agent-1234abcd-pg"}})
    assert is_data("Secret", {"metadata": {"name": "agent-1234abcd-redis"}})
    assert not is_data("Secret", {"metadata": {"name": "agent-1234abcd-env-0123456789"}})
    assert not is_data("Deployment", {"metadata": {"name": "agent-1234abcd-pg"}})


# --- the property: pruned only when every rule holds -------------------------------------------

VERDICTS = [DELETED, DELETED, DELETED, MOVED, PRESENT, ELSEWHERE, UNKNOWN]
"""Weighted towards "gone": the interesting cases are the ones where something could be pruned."""


@st.composite
def situations(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(min_value=1, max_value=12))
    ids = [UUID(f"00000000-0000-4000-8000-{i:012d}") for i in range(count)]
    candidates, confirmations = [], {}
    for d in ids:
        listed = draw(st.sampled_from([False, False, False, True]))
        marked = None
        if draw(st.sampled_from([True, True, True, False])):
            since = draw(st.floats(min_value=-2, max_value=25))
            last = draw(st.floats(min_value=-1, max_value=max(since, 0) + 1))
            marked = mark(since, last_minutes_ago=last, verdict=draw(st.sampled_from(["deleted", "moved"])))
        candidates.append(group(d, listed=listed, marked=marked))
        if not listed:
            confirmations[d] = draw(st.sampled_from(VERDICTS))
    return {
        "candidates": candidates,
        "confirmations": confirmations,
        "listener_error": draw(st.sampled_from([None, None, None, "GET /v2/listeners/x failed: 404"])),
        "listed": draw(st.integers(min_value=0, max_value=count)),
        "policy": PrunePolicy(
            window=WINDOW,
            max_fraction=draw(st.sampled_from([0.01, 0.1, 0.5, 1.0])),
            allow_empty=draw(st.booleans()),
        ),
    }


@settings(max_examples=300, deadline=None, derandomize=True)
@given(situations())
def test_nothing_is_pruned_unless_every_rule_holds(situation: dict[str, Any]) -> None:
    candidates: list[Candidate] = situation["candidates"]
    policy: PrunePolicy = situation["policy"]
    decisions = run(
        candidates,
        situation["confirmations"],
        listener_error=situation["listener_error"],
        listed=situation["listed"],
        policy=policy,
    )
    pruned = [d for d in decisions.values() if d.action == "prune"]
    total = len({c.deployment_id for c in candidates})
    assert len(pruned) <= max(1, math.floor(policy.max_fraction * total)), "the per-cycle cap"
    by_id = {c.deployment_id: c for c in candidates}
    for decision in pruned:
        candidate = by_id[decision.key[0]]
        assert not candidate.listed
        assert situation["listener_error"] is None, "the listener's own record answered this cycle"
        confirmation = situation["confirmations"][candidate.deployment_id]
        assert confirmation.verdict in ("deleted", "moved") or (
            confirmation.verdict == "present" and confirmation.namespace != candidate.namespace
        ), "the control plane's own answer: gone, or placed elsewhere"
        assert candidate.mark is not None
        assert NOW - candidate.mark.since >= policy.window, "absent for the whole window"
        assert NOW - candidate.mark.last <= STREAK_GAP * policy.window, "an unbroken streak"
        if not policy.allow_empty:
            assert situation["listed"] > 0, "allowEmpty: never when the control plane lists none"
    if pruned and not policy.allow_empty:
        gone = {d.key[0] for d in pruned if not d.moved}
        assert {c.deployment_id for c in candidates} - gone, "never the last of a non-empty set"
