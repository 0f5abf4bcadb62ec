"""The README's RBAC comparison table says exactly what the listener is granted (listener.kube)."""

from __future__ import annotations

from pathlib import Path

from listener import kube

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- rbac-table:"
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}


def _rows() -> list[list[str]]:
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(MARKER))
    rows = []
    for line in lines[start + 3 :]:  # marker, header, separator
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _granted_by_table() -> set[tuple[str, frozenset[str], frozenset[str]]]:
    granted = set()
    for subject, _listener, _operator, ours, _why in _rows():
        verbs = {v.strip() for v in ours.split(",")}
        if not verbs <= VERBS:
            continue  # "—", or a row about something other than a watched namespace
        group, _, resources = subject.partition(":")
        group = "" if group == "core" else group
        granted.add((group, frozenset(r.strip() for r in resources.split(",")), frozenset(verbs)))
    return granted


def test_the_table_lists_exactly_the_rules_the_program_renders() -> None:
    rules = {(r.api_group, frozenset(r.resources), frozenset(r.verbs)) for r in kube.WATCHED_NAMESPACE_RULES}
    assert _granted_by_table() == rules


def test_every_row_has_a_reason() -> None:
    rows = _rows()
    assert len(rows) >= len(kube.WATCHED_NAMESPACE_RULES)
    assert all(len(row) == 5 and row[4] for row in rows)
