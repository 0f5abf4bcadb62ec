"""The workspace's deployment list, read one item at a time.

`GET /v2/deployments` answers with every team's deployments, on every listener. Validating the page as
a whole would let one item this client cannot read (a sidecar without an image, a label that is not a
string, a field of a type the service added later) make the whole list unreadable, and with it every
rollout of every listener. So each item is validated on its own: an item that does not validate but
whose `id` is readable becomes an `UnreadableDeployment`, with what little can be read of it leniently
(its listener, its latest revision) and what is wrong with it: field paths and pydantic's messages,
never the values (an item's body carries its secrets). An item without a readable `id` cannot be
accounted for at all: the caller treats the whole list as unreadable (`UnreadableId`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from listener.controlplane.models import Deployment

__all__ = ["DeploymentListing", "UnreadableDeployment", "UnreadableId", "describe_errors", "read_item"]


def describe_errors(exc: ValidationError, at: str = "") -> str:
    """`loc: msg; ...` without the input values (pydantic's own `str` quotes them, and they may be
    secret). Parsing errors' messages quote a character of the input (`found 'x' at 1`): cut at the
    first comma, which keeps what kind of value was expected."""
    return _format(exc.errors(include_input=False, include_url=False), at)


def _format(errors: list[Any], at: str) -> str:
    problems = []
    for err in errors:
        where = ".".join([at] * bool(at) + [str(p) for p in err["loc"]]) or "<body>"
        msg = err["msg"].split(",")[0] if err["type"].endswith("_parsing") else err["msg"]
        problems.append(f"{where}: {msg}")
    return "; ".join(problems)


class UnreadableId(ValueError):
    """A list item whose `id` cannot be read: nothing about it can be known, not even what it is."""


@dataclass(frozen=True)
class UnreadableDeployment:
    """A deployment the list shows but the client cannot validate. Never holds any of its values."""

    id: UUID
    listener_id: UUID | None
    """`source_config.listener_id`, read leniently; None when the item says it has none."""
    listener_known: bool
    """False when `source_config.listener_id` itself cannot be read: it may be anyone's."""
    source: str | None
    """`source` when it is a string, else None."""
    revision_id: UUID | None
    """`latest_revision_id` when it is a UUID, else None."""
    problems: str
    """What does not validate, as `field.path: message; ...` (no values)."""

    @property
    def reason(self) -> str:
        return f"the control plane's record of this deployment cannot be read: {self.problems}"


@dataclass(frozen=True)
class DeploymentListing:
    """A complete list: the items that validated, and the ones that did not (by id)."""

    deployments: tuple[Deployment, ...]
    unreadable: tuple[UnreadableDeployment, ...] = ()


def _uuid(value: object) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def read_item(item: Any, at: str = "") -> Deployment | UnreadableDeployment:
    """One list item: a `Deployment`, or an `UnreadableDeployment` when only its id can be read.
    Raises `UnreadableId` (with the problems at `id`, no values; locations prefixed with `at`) when
    not even that can."""
    try:
        return Deployment.model_validate(item)
    except ValidationError as exc:
        deployment_id = _uuid(item.get("id")) if isinstance(item, dict) else None
        if deployment_id is None:
            errors = exc.errors(include_input=False, include_url=False)
            at_id = [err for err in errors if tuple(err["loc"][:1]) in ((), ("id",))]
            # A valid UUID string that pydantic refuses is impossible; an id pydantic reads in a
            # form this module does not (not a string) still has no id we can account for.
            raise UnreadableId(_format(at_id, at) or f"{at}.id: not a UUID string".lstrip(".")) from None
        error = exc
    config = item.get("source_config")
    if isinstance(config, dict):
        raw = config.get("listener_id")
        listener_id = _uuid(raw)
        # Absent or null: the item says it is on no listener (the model reads absence as null too).
        known = raw is None or listener_id is not None
    else:
        listener_id, known = None, False
    source = item.get("source")
    return UnreadableDeployment(
        id=deployment_id,
        listener_id=listener_id,
        listener_known=known,
        source=source if isinstance(source, str) else None,
        revision_id=_uuid(item.get("latest_revision_id")),
        problems=describe_errors(error),
    )
