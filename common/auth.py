"""Who is calling: the auth service's JWT, from the cookie-session cookie or a Bearer header."""

from __future__ import annotations

import base64
import binascii
import json

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import aware_utcnow

# cookie-session 2.x names its cookie "session", 1.x "express:sess".
SESSION_COOKIE_NAMES = ("session", "express:sess")


class SessionToken(Token):
    """The auth service's token: HS256, claims {id, email, iat}, and usually no `exp`.

    Stock AccessToken requires `exp`, `jti` and a token type; this one honours `exp` only when present.
    """

    token_type = "session"  # noqa: S105 (a token type name, not a secret)
    lifetime = None  # never minted through simplejwt; see mint_token

    def __init__(self, token=None, verify=True) -> None:
        if token is None:
            raise TokenError("SessionToken only wraps tokens issued by the auth service")
        self.token = token
        self.current_time = aware_utcnow()
        try:
            self.payload = self.get_token_backend().decode(token, verify=verify)
        except Exception as exc:  # expired, bad signature, alg none, garbage
            raise TokenError("Token is invalid") from exc
        if verify:
            self.verify()

    def verify(self) -> None:
        if "exp" in self.payload:
            self.check_exp()
        user_id = self.payload.get("id")
        if not isinstance(user_id, str) or not user_id:
            raise TokenError("Token has no user id")


def token_from_session_cookie(value: str) -> str | None:
    """The `jwt` inside a cookie-session value (unsigned base64 of JSON), or None if malformed."""
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        session = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):
        return None
    token = session.get("jwt") if isinstance(session, dict) else None
    return token if isinstance(token, str) and token else None


class SessionCookieJWTAuthentication(JWTStatelessUserAuthentication):
    """Signed in = a valid token in the session cookie or the Authorization header.

    Anything wrong with the token means "not signed in" (the Node currentUser middleware's rule),
    so the permission check answers 401 `Not authorized`.
    """

    def authenticate(self, request):
        raw_token = self.raw_token_from_header(request) or self.raw_token_from_cookie(request)
        if raw_token is None:
            return None
        try:
            validated = self.get_validated_token(raw_token)
            return self.get_user(validated), validated
        except (InvalidToken, TokenError):
            return None

    def raw_token_from_header(self, request) -> str | None:
        try:
            header = self.get_header(request)
            raw = self.get_raw_token(header) if header is not None else None
        except Exception:  # a malformed Authorization header (even one that is not latin-1) is "not signed in"
            return None
        return raw.decode("latin-1") if isinstance(raw, bytes) else raw

    def raw_token_from_cookie(self, request) -> str | None:
        for name in SESSION_COOKIE_NAMES:
            value = request.COOKIES.get(name)
            if value:
                token = token_from_session_cookie(value)
                if token:
                    return token
        return None


class SessionCookieJWTScheme(OpenApiAuthenticationExtension):
    """The two ways to sign in, documented as alternatives: the session cookie or a Bearer token."""

    target_class = "common.auth.SessionCookieJWTAuthentication"
    name = ["sessionCookie", "bearerAuth"]

    def get_security_requirement(self, auto_schema):
        # One requirement per scheme means "either"; the default (one object naming both) means "both".
        return [{name: []} for name in self.name]

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "apiKey",
                "in": "cookie",
                "name": "session",
                "description": (
                    "cookie-session cookie set by the auth service: standard base64 of "
                    '{"jwt": "<HS256 token with claims id, email, iat>"}. '
                    "The 1.x name `express:sess` is accepted too."
                ),
            },
            {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        ]
