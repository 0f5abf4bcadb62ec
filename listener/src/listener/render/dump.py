"""Multi-document YAML for `--dry-run`, with Secret values redacted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

REDACTED = "<redacted>"


def redact(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Secrets keep their keys (what a reader needs to check) but lose every value."""
    if obj.get("kind") != "Secret":
        return dict(obj)
    out = dict(obj)
    for field in ("stringData", "data"):
        if field in out:
            out[field] = dict.fromkeys(sorted(out[field]), REDACTED)
    return out


def to_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """Keys come out in render order, which is deterministic; `---` between documents."""
    return yaml.safe_dump_all(
        [redact(o) for o in objects], sort_keys=False, default_flow_style=False, allow_unicode=True
    )
