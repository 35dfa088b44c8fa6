"""`python manage.py run_listeners`: the event worker (listeners + outbox relay) until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand

from core.transactions import database_role
from messaging.listener import registered_listeners
from messaging.worker import Worker, registered_periodic


class Command(BaseCommand):
    help = "Run the NATS JetStream listeners, the outbox relay and the periodic tasks (metrics and /healthz on WORKER_METRICS_PORT); SIGTERM/SIGINT drain and exit 0."

    def handle(self, *args, **options):
        async def main() -> None:
            worker = Worker(
                list(registered_listeners().values()),
                periodic=registered_periodic(),
                metrics_port=settings.WORKER_METRICS_PORT,
            )
            worker.install_signal_handlers()
            await worker.run()

        # Batches of events, not requests: the worker's server-side timeouts (settings.DATABASE_ROLES),
        # and the caller's again afterwards (a test process calls the command in-process).
        with database_role("worker"):
            asyncio.run(main())
