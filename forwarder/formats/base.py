"""What every output format provides: one line of text per FlowEvent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from forwarder.flowlog.model import FlowEvent


class Formatter(Protocol):
    """Turns FlowEvents into single-line strings (no trailing newline).

    Implementations cache whatever is constant per FlowContext (compare contexts with ``is``:
    events arrive grouped by context) so that the per-tuple work is a handful of substitutions.
    """

    name: str
    content_type: str  # "application/json" for JSON formats, "text/plain" for CEF

    def format(self, event: FlowEvent) -> str: ...

    def format_many(self, events: Sequence[FlowEvent]) -> list[str]: ...

    def format_joined(self, events: Sequence[FlowEvent]) -> bytes:
        """The lines as UTF-8, each followed by a newline; with the compiled core, no str per line."""
        ...
