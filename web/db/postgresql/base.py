"""PostgreSQL with django-prometheus' metrics, its queries metered by web.db.cursors (labels looked up once)."""

from __future__ import annotations

from django.db.backends.postgresql import base
from django_prometheus.db.backends.postgresql.base import DatabaseWrapper as _DatabaseWrapper

from web.db.cursors import metered_cursor_class


class DatabaseWrapper(_DatabaseWrapper):
    def get_connection_params(self):
        # Django's parameters (not django-prometheus' own cursor factory over them), metered here.
        params = base.DatabaseWrapper.get_connection_params(self)
        params["cursor_factory"] = metered_cursor_class(params["cursor_factory"], self.alias, self.vendor)
        return params
