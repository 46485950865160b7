"""Every kind of operation the agents can run, by name (the `operations.kind` column)."""

from __future__ import annotations

from nexus.errors import TerminalError
from nexus.operations.steps import Kind
from nexus.sharing import requeue_bulk

KINDS: dict[str, Kind] = {kind.name: kind for kind in (requeue_bulk.KIND,)}


def kind_of(name: str) -> Kind:
    """The kind named `name`; an unknown one fails the operation for good."""
    kind = KINDS.get(name)
    if kind is None:
        raise TerminalError("E_INVALID_REQUEST", f"unknown operation kind {name!r}")
    return kind
