"""Which core does the per-tuple work: the compiled one (forwarder._core, built from csrc/ by
``pip install``) or the pure-Python reference in normalise.py and forwarder/formats.

Both give the same events and the same bytes; the compiled core is several times faster. The pure-Python
one is used when the extension was not built (no C compiler at install time) or when
NSG_FORWARDER_PURE_PYTHON=1 is set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from forwarder.flowlog.model import FlowEvent


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get("NSG_FORWARDER_PURE_PYTHON", "") not in ("", "0"):
        return None, "pure Python, NSG_FORWARDER_PURE_PYTHON=1"
    try:
        from forwarder import _core
    except ImportError:
        return None, "pure Python, the compiled core is not built"
    _core.set_event_type(FlowEvent)
    Sequence.register(_core.Events)  # what it is, for isinstance checks and readers of the code
    return _core, "compiled C"


core, DESCRIPTION = _load()
ACTIVE = core is not None


class _NoEvents:
    """Stands in for the compiled Events type when there is none: no object is ever of this type."""


CoreEvents: Any = core.Events if core is not None else _NoEvents


def concat(batches: Sequence[Sequence[FlowEvent]]) -> Sequence[FlowEvent]:
    """The events of several batches of the Normaliser as one sequence, in order.

    Compiled batches stay compiled (their rows copied into one, no FlowEvent built), so that a chunk made of
    several batches is still formatted by the compiled core; anything else becomes a list.
    """
    if core is not None and batches and all(type(b) is core.Events for b in batches):
        joined: Sequence[FlowEvent] = core.concat(list(batches))  # type: ignore[arg-type]
        return joined
    return [e for batch in batches for e in batch]
