"""Failed (poison) events and the outbox in the admin, with a retry for failed events."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.utils import timezone

from common.admin import ReadOnlyModelAdmin
from messaging.listener import registered_listeners
from messaging.models import FailedEvent, OutboxEvent


def retry_failed_event(failed: FailedEvent) -> tuple[bool, str]:
    """Apply the failed event again through its listener; resolve it if it applies."""
    listener = registered_listeners().get(failed.subject)
    if listener is None:
        return False, f"no listener for {failed.subject}"
    try:
        event = listener.event_type.from_bytes(failed.payload.encode("utf-8"))
        result = listener.handle(event)
    except Exception as exc:  # InvalidEvent, NotYet, RetryLater, Rejected, or a fault: all reported
        FailedEvent.objects.filter(pk=failed.pk).update(error=f"retry: {exc}", failed_at=timezone.now())
        return False, str(exc)
    FailedEvent.objects.filter(pk=failed.pk).update(resolved_at=timezone.now())
    return True, result


@admin.register(FailedEvent)
class FailedEventAdmin(admin.ModelAdmin):
    list_display = ["failed_at", "subject", "stream_sequence", "delivery_count", "short_error", "resolved_at"]
    list_filter = ["subject", ("resolved_at", admin.EmptyFieldListFilter), "failed_at"]
    search_fields = ["payload", "error"]
    readonly_fields = [f.name for f in FailedEvent._meta.fields]
    actions = ["retry"]

    @admin.display(description="error")
    def short_error(self, failed: FailedEvent) -> str:
        return failed.error[:120]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Retry: apply the selected events again")
    def retry(self, request, queryset) -> None:
        for failed in queryset:
            with transaction.atomic():
                ok, detail = retry_failed_event(failed)
            level = messages.SUCCESS if ok else messages.WARNING
            self.message_user(request, f"{failed.subject} #{failed.stream_sequence}: {detail}", level)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "subject", "created_at", "sent_at"]
    list_filter = ["subject", ("sent_at", admin.EmptyFieldListFilter)]
    search_fields = ["id", "payload"]
    readonly_fields = ["id", "subject", "payload", "created_at", "sent_at"]
