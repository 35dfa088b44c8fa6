"""`python manage.py run_listeners`: the event worker (listeners + outbox relay) until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from django.core.management.base import BaseCommand

from messaging.listener import registered_listeners
from messaging.worker import Worker


class Command(BaseCommand):
    help = "Run the NATS JetStream listeners and the outbox relay; SIGTERM/SIGINT drain and exit 0."

    def handle(self, *args, **options):
        async def main() -> None:
            worker = Worker(list(registered_listeners().values()))
            worker.install_signal_handlers()
            await worker.run()

        asyncio.run(main())
