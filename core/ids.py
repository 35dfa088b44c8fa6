"""24-hex ObjectId-style identifiers, the form every service of the platform checks ids with."""

from __future__ import annotations

import os
import re
import threading
import time

OBJECT_ID_RE = re.compile(r"[0-9a-fA-F]{24}")

_counter_lock = threading.Lock()
_counter = int.from_bytes(os.urandom(3), "big")
_process_random = os.urandom(5).hex()


def new_object_id() -> str:
    """Return a new id laid out like a MongoDB ObjectId: seconds, per-process random, counter.

    Ids made later sort after ids made earlier (to the second), as mongoose's do.
    """
    global _counter
    with _counter_lock:
        _counter = (_counter + 1) % 0xFFFFFF
        counter = _counter
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{_process_random}{counter:06x}"


def is_object_id(value: object) -> bool:
    # fullmatch: `$` would also match before a trailing newline, and mongoose rejects that id.
    return isinstance(value, str) and OBJECT_ID_RE.fullmatch(value) is not None
