"""`python manage.py show_events`: print the latest events on the stream, as another service sees them."""

from __future__ import annotations

import asyncio

from django.core.management.base import BaseCommand, CommandError
from nats.js.errors import NotFoundError

from messaging.events import Subject
from messaging.jetstream import connect


class Command(BaseCommand):
    help = "Print the last events of the given subjects (default: all six) from JetStream."

    def add_arguments(self, parser):
        parser.add_argument("--subject", action="append", choices=[s.value for s in Subject], help="repeatable")
        parser.add_argument("--last", type=int, default=10, help="how many of the latest events (default 10)")

    def handle(self, *args, subject: list[str] | None, last: int, **options):
        for line in asyncio.run(self.read(subject or [s.value for s in Subject], last)):
            self.stdout.write(line)

    async def read(self, subjects: list[str], last: int) -> list[str]:
        try:
            client = await connect(name="orders-service-show-events", retry_forever=False)
        except Exception as exc:
            raise CommandError(f"cannot reach NATS: {exc}") from exc
        lines: list[str] = []
        try:
            js = client.jetstream()
            streams = set()
            for subject in subjects:
                try:
                    streams.add(await js.find_stream_name_by_subject(subject))
                except NotFoundError:
                    continue
            for stream in sorted(streams):
                state = (await js.stream_info(stream)).state
                seq = state.last_seq
                found: list[str] = []
                # Walk back from the end; bounded so a huge stream is not read whole.
                while seq >= state.first_seq and len(found) < last and state.last_seq - seq < 10_000:
                    try:
                        msg = await js.get_msg(stream, seq)
                    except NotFoundError:
                        seq -= 1
                        continue
                    if msg.subject in subjects:
                        msg_id = (msg.headers or {}).get("Nats-Msg-Id", "-")
                        # The trace context only when the event carries one: one trace id from request to stream.
                        traced = "".join(
                            f" {name}={value}"
                            for name, value in (msg.headers or {}).items()
                            if name in ("traceparent", "tracestate")
                        )
                        found.append(
                            f"{stream} #{seq} {msg.subject} msg-id={msg_id}{traced} {msg.data.decode(errors='replace')}"
                        )
                    seq -= 1
                lines.extend(reversed(found))
        finally:
            await client.close()
        return lines
