"""What the event plumbing keeps in the database: the outbox and the failed (poison) events."""

from __future__ import annotations

from django.db import models

from core.ids import new_object_id


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it reports; the relay publishes it."""

    # Also the Nats-Msg-Id, so a re-send after a crash is dropped by JetStream's de-duplication.
    id = models.CharField(primary_key=True, max_length=24, default=new_object_id, editable=False)
    subject = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The W3C trace context (`traceparent`, `tracestate`) of the transaction that wrote the row: the
    # relay sends it as NATS headers, so the event joins the trace of the request or event that caused it.
    trace_context = models.JSONField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["sent_at", "created_at"], name="outbox_pending_idx")]

    def __str__(self) -> str:
        return f"{self.subject} {self.id}"


class FailedEvent(models.Model):
    """A consumed message that could not be applied: kept for an operator, then acked or terminated."""

    id = models.CharField(primary_key=True, max_length=24, default=new_object_id, editable=False)
    subject = models.CharField(max_length=64)
    stream = models.CharField(max_length=255, blank=True)
    stream_sequence = models.PositiveBigIntegerField(null=True, blank=True)
    payload = models.TextField(help_text="The message body as received (it may not be valid JSON).")
    error = models.TextField()
    delivery_count = models.PositiveIntegerField(default=1)
    failed_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-failed_at"]
        constraints = [
            # A message redelivered after its failure was recorded updates the same row.
            models.UniqueConstraint(fields=["stream", "stream_sequence"], name="failed_event_unique_message"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} #{self.stream_sequence}: {self.error[:60]}"
