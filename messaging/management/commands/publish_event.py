"""`python manage.py publish_event SUBJECT JSON`: publish one event as another service would."""

from __future__ import annotations

import asyncio
import re

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.ids import new_object_id
from messaging.events import InvalidEvent, Subject, encode_json, parse_event
from messaging.jetstream import connect, ensure_streams, jetstream

TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


class Command(BaseCommand):
    help = "Publish one event to JetStream (validated against the subject's schema unless --raw)."

    def add_arguments(self, parser):
        parser.add_argument("subject", help=", ".join(s.value for s in Subject))
        parser.add_argument("payload", help="the event's JSON")
        parser.add_argument("--raw", action="store_true", help="send the payload as given, unvalidated")
        parser.add_argument("--msg-id", default=None, help="Nats-Msg-Id (default: a new id)")
        parser.add_argument(
            "--traceparent",
            default=None,
            help="a W3C traceparent header, as a traced peer sends (00-<trace>-<span>-01)",
        )

    def handle(
        self, *args, subject: str, payload: str, raw: bool, msg_id: str | None, traceparent: str | None, **options
    ):
        data = payload.encode("utf-8")
        # Checked first: --raw skips the payload's validation, never the subject's.
        if subject not in Subject._value2member_map_:
            raise CommandError(f"unknown subject {subject!r}")
        if not raw:
            try:
                data = encode_json(parse_event(subject, data).to_payload())
            except InvalidEvent as exc:
                raise CommandError(f"{exc} (use --raw to send it anyway)") from exc
        msg_id = msg_id or new_object_id()
        headers = {"Nats-Msg-Id": msg_id}
        if traceparent is not None:
            if not TRACEPARENT.fullmatch(traceparent):
                raise CommandError("--traceparent must look like 00-<32 hex>-<16 hex>-<2 hex>")
            headers["traceparent"] = traceparent
        ack = asyncio.run(self.publish(subject, data, headers))
        duplicate = " (duplicate, dropped by the stream)" if ack.duplicate else ""
        self.stdout.write(f"published {subject} to {ack.stream} seq={ack.seq} msg-id={msg_id}{duplicate}")

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]):
        try:
            client = await connect(name="orders-service-publish-event", retry_forever=False)
        except Exception as exc:
            raise CommandError(f"cannot reach NATS: {exc}") from exc
        try:
            js = jetstream(client)
            await ensure_streams(js)
            return await js.publish(subject, data, headers=headers, timeout=settings.NATS_PUBLISH_TIMEOUT_SECONDS)
        finally:
            await client.close()
