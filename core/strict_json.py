"""JSON from outside (request bodies, event payloads), read strictly."""

from __future__ import annotations

import json
from typing import Any


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(text: str) -> Any:
    """json.loads that refuses NaN/Infinity and turns absurd nesting into a ValueError.

    Every failure is a ValueError, so callers map one exception to "malformed".
    """
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
