"""Failed (poison) events and the outbox in the admin, with a retry for failed events."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from core.transactions import atomic
from messaging.listener import registered_listeners
from messaging.models import FailedEvent, OutboxEvent
from web.admin_site import ReadOnlyModelAdmin, ViewOnlyPagesMixin


def retry_failed_event(failed: FailedEvent) -> tuple[bool, str]:
    """Apply the failed event again through its listener; resolve it if it applies."""
    listener = registered_listeners().get(failed.subject)
    if listener is None:
        return False, f"no listener for {failed.subject}"
    try:
        event = listener.event_type.from_bytes(failed.payload.encode("utf-8"))
        result = listener.handle(event)
    except Exception as exc:  # InvalidEvent, RetryLater, Rejected, or a fault: all reported
        FailedEvent.objects.filter(pk=failed.pk).update(error=f"retry: {exc}", failed_at=timezone.now())
        return False, str(exc)
    FailedEvent.objects.filter(pk=failed.pk).update(resolved_at=timezone.now())
    return True, result


@admin.register(FailedEvent)
class FailedEventAdmin(ViewOnlyPagesMixin, admin.ModelAdmin):
    list_display = ["failed_at", "subject", "stream_sequence", "delivery_count", "full_error", "resolved_at"]
    list_filter = ["subject", ("resolved_at", admin.EmptyFieldListFilter), "failed_at"]
    search_fields = ["payload", "error"]
    readonly_fields = [f.name for f in FailedEvent._meta.fields]
    actions = ["retry"]
    # The page offers Retry (a form of its own) instead of Save buttons: nothing on it can be edited.
    change_form_template = "admin/messaging/failedevent/change_form.html"

    @admin.display(description="error", ordering="error")
    def full_error(self, failed: FailedEvent):
        # The whole error, wrapped: the operator needs all of it to decide what to do.
        return format_html('<span style="white-space: pre-wrap; word-break: break-word">{}</span>', failed.error)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # The change permission unlocks Retry, never the form: no field of a failed event is editable.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # resolved events are the history an operator looks back at

    def get_urls(self):
        retry_url = path(
            "<path:object_id>/retry/",
            self.admin_site.admin_view(self.retry_view),
            name="messaging_failedevent_retry",
        )
        return [retry_url, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {"can_retry": self.has_change_permission(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def _retry(self, request, failed: FailedEvent) -> None:
        with atomic():
            ok, detail = retry_failed_event(failed)
        level = messages.SUCCESS if ok else messages.WARNING
        self.message_user(request, f"{failed.subject} #{failed.stream_sequence}: {detail}", level)

    def retry_view(self, request, object_id: str):
        """POST from the Retry button of a failed event's page; back to that page with the outcome."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        failed = get_object_or_404(FailedEvent, pk=object_id)
        self._retry(request, failed)
        return redirect(reverse("admin:messaging_failedevent_change", args=[failed.pk]))

    @admin.action(description="Retry: apply the selected events again", permissions=["change"])
    def retry(self, request, queryset) -> None:
        for failed in queryset:
            self._retry(request, failed)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "subject", "created_at", "sent_at"]
    list_filter = ["subject", ("sent_at", admin.EmptyFieldListFilter)]
    search_fields = ["id", "payload"]
    readonly_fields = ["id", "subject", "payload", "created_at", "sent_at"]
