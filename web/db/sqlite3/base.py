"""SQLite with django-prometheus' metrics, its cursor class built once and metered by web.db.cursors.

django-prometheus' SQLite backend builds a new cursor class (a `class` statement) for every cursor,
so for every query: about a fortieth of the CPU of a `GET /api/orders/:id` (docs/profiles/server.md).
This one builds it once per thread's database wrapper, as its PostgreSQL backend does per connection.
"""

from __future__ import annotations

from django.utils.functional import cached_property
from django_prometheus.db.backends.sqlite3.base import DatabaseWrapper as _DatabaseWrapper

from web.db.cursors import metered_cursor_class


class DatabaseWrapper(_DatabaseWrapper):
    @cached_property
    def _cursor_class(self) -> type:
        return metered_cursor_class(self.CURSOR_CLASS, self.alias, self.vendor)

    def create_cursor(self, name=None):
        return self.connection.cursor(factory=self._cursor_class)
