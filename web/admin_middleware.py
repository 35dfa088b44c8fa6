"""Django's session, authentication and messages middleware, acting on the admin's pages only.

Only the admin signs staff in with a session and shows them messages; the API knows its users by the
auth service's JWT cookie, and no other page reads a session. Yet each of these middleware works on
every request it sees (a session store, a lazy user, the messages' cookie signer): about a tenth of
the CPU of a `GET /api/orders/:id` (docs/profiles/server.md). Each is Django's own class, subclassed
so that the admin's system checks (admin.E408-E410) still find it, passing any other request on
untouched. CSRF protection stays on every path (`django.middleware.csrf`, unchanged).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware as _AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware as _MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware as _SessionMiddleware


class AdminPagesOnly:
    """Mixed in before a Django middleware: the middleware sees the requests under settings.ADMIN_PATH,
    every other one goes straight on to the next."""

    get_response: Any

    def __call__(self, request: Any) -> Any:
        if request.path_info.startswith(settings.ADMIN_PATH):
            return super().__call__(request)  # type: ignore[misc]
        return self.get_response(request)


class SessionMiddleware(AdminPagesOnly, _SessionMiddleware):
    pass


class AuthenticationMiddleware(AdminPagesOnly, _AuthenticationMiddleware):
    pass


class MessageMiddleware(AdminPagesOnly, _MessageMiddleware):
    pass
