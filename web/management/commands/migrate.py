"""`python manage.py migrate`: Django's, with the `migrate` role's server-side timeouts (none by default)."""

from __future__ import annotations

from django.core.management.commands.migrate import Command as DjangoMigrateCommand

from core.transactions import database_role


class Command(DjangoMigrateCommand):
    def handle(self, *args, **options):
        # A migration may rewrite a whole table: the API's statement_timeout must not cut it short.
        with database_role("migrate", options["database"]):
            return super().handle(*args, **options)
