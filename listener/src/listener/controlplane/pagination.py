"""Collect every page of a list endpoint, the way langgraph-cli does (`host_backend.py::_every_page`).

The returned `offset` is not trusted: the next offset is the number of resources collected so far, a page
shorter than
the page size ends the listing, and a page that repeats an already-seen ID means the server ignores `offset`,
which
would otherwise loop forever; that raises instead.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from listener.controlplane.errors import PaginationError

__all__ = ["PAGE_SIZE", "collect_pages"]

PAGE_SIZE = 100
MAX_PAGES = 10_000
"""A hard ceiling (a million resources) so that even a server inventing fresh IDs forever cannot loop us
forever."""

T = TypeVar("T")


def collect_pages(
    fetch: Callable[[int, int], Sequence[T]],
    id_of: Callable[[T], Hashable],
    *,
    page_size: int = PAGE_SIZE,
    what: str = "resources",
    max_pages: int = MAX_PAGES,
) -> list[T]:
    """All resources from `fetch(limit, offset)`; all or nothing (a failed page raises, never a partial
    list)."""
    collected: list[T] = []
    seen: set[Hashable] = set()
    for _ in range(max_pages):
        page = fetch(page_size, len(collected))
        for item in page:
            key = id_of(item)
            if key in seen:
                raise PaginationError(
                    f"The control plane returned {what} {key} twice while paging (offset={len(collected)}): "
                    "it ignores 'offset', so the list cannot be read reliably."
                )
            seen.add(key)
            collected.append(item)
        if len(page) < page_size:
            return collected
    raise PaginationError(f"Listing {what} did not end after {max_pages} pages of {page_size}; giving up.")
