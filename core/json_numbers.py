"""Numbers as JavaScript prints them."""

from __future__ import annotations


def json_number(value: float | int) -> float | int:
    """20.0 becomes 20 and 10.5 stays 10.5, so prices read the same as from the Node services."""
    value = float(value)
    return int(value) if value.is_integer() else value
