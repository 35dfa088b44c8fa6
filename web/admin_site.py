"""Admin pieces shared by the apps."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import JsonResponse

from web.errors import error_body


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """For records another part of the system owns: staff may look, never add, change or delete."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ViewOnlyPagesMixin:
    """For admins whose change permission only unlocks list actions: the pages say "view", not "change".

    Django titles a changelist "Select … to change" whenever the change permission holds, even
    when, as here, it only serves the actions (cancel, retry) and no field can be edited.
    """

    def changelist_view(self, request, extra_context=None):
        opts = self.model._meta
        extra_context = {"title": f"Select {opts.verbose_name} to view", **(extra_context or {})}
        return super().changelist_view(request, extra_context)


def client_ip(request) -> str:
    """The client's address for login throttling: the last X-Forwarded-For entry when a proxy (the
    ingress) appended one, else the socket's peer. Earlier entries are the client's own word."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded.strip():
        return forwarded.rsplit(",", 1)[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def login_locked_out(request, original_response=None, credentials=None) -> JsonResponse:
    """django-axes' answer once a username has too many failed admin logins: 429 in the error shape."""
    minutes = round(settings.AXES_COOLOFF_TIME * 60)
    response = JsonResponse(error_body(f"Too many failed login attempts: try again in {minutes} minutes"), status=429)
    response["Retry-After"] = str(minutes * 60)
    return response
