"""Print a `Cookie:` header value carrying a session JWT, as the auth service would set it, or the bare token."""

from __future__ import annotations

import base64
import json
import time

import jwt
from django.conf import settings
from django.core.management.base import BaseCommand

from core.ids import new_object_id


def session_token(*, user_id: str, email: str, issued_at: int | None = None) -> str:
    """The JWT the auth service signs: HS256 over {id, email, iat}, no `exp`."""
    return jwt.encode(
        {"id": user_id, "email": email, "iat": issued_at or int(time.time())}, settings.JWT_KEY, algorithm="HS256"
    )


def session_cookie_value(*, user_id: str, email: str, issued_at: int | None = None) -> str:
    token = session_token(user_id=user_id, email=email, issued_at=issued_at)
    return base64.b64encode(json.dumps({"jwt": token}, separators=(",", ":")).encode()).decode()


class Command(BaseCommand):
    help = (
        "Print `session=<value>` for a Cookie header, signed with JWT_KEY like the auth service's "
        "(--bearer: the bare token, for `Authorization: Bearer` and Swagger UI's Authorize)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--id", default=None, help="user id (default: a new 24-hex id)")
        parser.add_argument("--email", default="test@test.com", help="user email (default: test@test.com)")
        parser.add_argument("--bearer", action="store_true", help="print the bare token instead of the cookie")

    def handle(self, *args, **options):
        user_id = options["id"] or new_object_id()
        if options["bearer"]:
            self.stdout.write(session_token(user_id=user_id, email=options["email"]))
        else:
            self.stdout.write(f"session={session_cookie_value(user_id=user_id, email=options['email'])}")
