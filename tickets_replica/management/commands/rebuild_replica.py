"""`python manage.py rebuild_replica`: apply every ticket event on the stream again; the newest version wins."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand
from django.db import connections

from core.transactions import database_role
from messaging.jetstream import connect, jetstream
from messaging.worker import FETCH_BATCH
from tickets_replica.rebuild import rebuild_replica


class Command(BaseCommand):
    help = (
        "Re-read ticket:created and ticket:updated from the start of the stream (an ephemeral consumer) and "
        "apply them as the worker does: missing tickets are created, older ones updated, newer ones left alone. "
        "Safe while the worker runs."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch", type=int, default=FETCH_BATCH, help="events per fetch and transaction")

    def handle(self, *args, batch: int, **options) -> None:
        async def main():
            client = await connect(name="orders-service-rebuild-replica", retry_forever=False)
            try:
                return await rebuild_replica(jetstream(client), batch=batch)
            finally:
                await client.close()
                # The ORM ran on asgiref's thread: close what it opened there.
                await sync_to_async(connections.close_all, thread_sensitive=True)()

        # It applies the worker's batches: the worker's server-side timeouts, then the caller's again.
        with database_role("worker"):
            summary = asyncio.run(main())
        self.stdout.write(str(summary))
