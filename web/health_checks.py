"""Readiness checks of our own, for what django-health-check does not cover: MongoDB."""

from __future__ import annotations

import dataclasses

from django.db import connections
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable


@dataclasses.dataclass
class MongoDatabase(HealthCheck):
    """The MongoDB deployment answers `ping` (django-health-check's Database check runs SQL)."""

    alias: str = "default"

    def run(self):
        connection = connections[self.alias]
        try:
            connection.ensure_connection()
            connection.connection.admin.command("ping")
        except Exception as exc:  # pymongo's errors (server selection, auth, network) all mean "not ready"
            raise ServiceUnavailable(f"MongoDB did not answer ping: {type(exc).__name__}") from exc


def readiness_checks() -> tuple[str, ...]:
    """What /readyz runs: a ping on MongoDB, `SELECT 1` on the SQL databases."""
    if connections["default"].settings_dict["ENGINE"] == "django_mongodb_backend":
        return ("web.health_checks.MongoDatabase",)
    return ("health_check.checks.Database",)
