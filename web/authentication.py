"""Who is calling: the auth service's JWT, from the cookie-session cookie or a Bearer header."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging

import jwt
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import aware_utcnow

logger = logging.getLogger(__name__)

# cookie-session 2.x names its cookie "session", 1.x "express:sess".
SESSION_COOKIE_NAMES = ("session", "express:sess")

# The longest user id the service can store: orders.Order.user_id is a CharField(max_length=255),
# which PostgreSQL enforces (a longer id was a 500 there and silently stored on SQLite).
USER_ID_MAX_LENGTH = 255

# Why PyJWT refused a token, in the words the log uses (never the token itself).
DECODE_FAILURE_REASONS = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.ImmatureSignatureError, "issued in the future"),
    (jwt.DecodeError, "malformed token"),
)


# A client sends the same token with every request, and verifying it through simplejwt and PyJWT cost
# 110-126 us a request (measured in process; docs/benchmarks-notes.md, "The front door"). The claims of
# the tokens that verified lately are kept per process, keyed by the whole token (signature included)
# and by the backend that verified it (its keys are fixed once it has verified a token: simplejwt caches
# the prepared key); a token that fails is never kept, and `exp` is still checked on every request
# (SessionToken.verify). Bounded: at most this many tokens, the least recently used go.
VERIFIED_TOKENS_KEPT = 4096


@functools.lru_cache(maxsize=VERIFIED_TOKENS_KEPT)
def verified_claims(token: str, backend: TokenBackend) -> tuple[tuple[str, object], ...]:
    """The claims of `token` as `backend` decodes and verifies them (raising as it does)."""
    payload = backend.decode(token, verify=True)
    return tuple(payload.items())


class UnusableToken(TokenError):
    """A token that does not sign anyone in, with the reason the log gives."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_usable_user_id(value: object) -> bool:
    """Whether the service can store and send this id: a non-empty UTF-8 string that fits the column.

    PostgreSQL refuses NUL characters and ids longer than the column; no database (nor JSON
    encoder for events) takes a lone surrogate, which a JSON `\\ud800` escape in the token yields.
    """
    if not isinstance(value, str) or not value or len(value) > USER_ID_MAX_LENGTH or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
        backend = self.get_token_backend()
        try:
            if verify:
                self.payload = dict(verified_claims(token, backend))
            else:
                self.payload = backend.decode(token, verify=False)
        except Exception as exc:  # expired, bad signature, alg none, garbage
            raise UnusableToken(decode_failure_reason(exc)) from exc
        if verify:
            self.verify()

    def verify(self) -> None:
        if "exp" in self.payload:
            try:
                self.check_exp()
            except TokenError as exc:
                raise UnusableToken("expired") from exc
        if not is_usable_user_id(self.payload.get("id")):
            raise UnusableToken("user id missing or unusable")


def decode_failure_reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc  # simplejwt's TokenBackendError wraps PyJWT's exception
    for exception_type, reason in DECODE_FAILURE_REASONS:
        if isinstance(cause, exception_type):
            return reason
    return "invalid token"


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
    """Signed in = a valid token in the Authorization header (Bearer) or else the session cookie.

    Anything wrong with the token means "not signed in" (the Node currentUser middleware's rule),
    so the permission check answers 401 `Not authorized`; the reason is logged at INFO on this
    module's logger, never the token. A Bearer header that is there but wrong never falls back to
    the cookie: the client said which credential it meant.
    """

    def __init__(self) -> None:
        # Not simplejwt's, which looks the user model up for every request (about a fortieth of a
        # `GET /api/orders/:id`, docs/profiles/server.md), for the database users this stateless
        # authentication never loads: its users are simplejwt's TokenUser.
        pass

    def authenticate(self, request):
        bearer = self.bearer_header(request)
        if bearer is not None:
            transport, parts = "Bearer header", bearer
            if len(parts) != 2:
                return self.not_signed_in("malformed Authorization header", transport)
            raw_token = parts[1]
        else:
            transport, raw_token = "session cookie", self.raw_token_from_cookie(request)
            if raw_token is None:
                sent_cookie = any(request.COOKIES.get(name) for name in SESSION_COOKIE_NAMES)
                return self.not_signed_in("malformed session cookie" if sent_cookie else "no credentials", None)
        try:
            validated = SessionToken(raw_token)
        except UnusableToken as exc:
            return self.not_signed_in(exc.reason, transport)
        return self.get_user(validated), validated

    @staticmethod
    def not_signed_in(reason: str, transport: str | None) -> None:
        logger.info("Not signed in: %s%s", reason, f" ({transport})" if transport else "")
        return None

    @staticmethod
    def bearer_header(request) -> list[str] | None:
        """The Authorization header split in words when its scheme is Bearer (in any case), else None.

        Another scheme (Basic...) or no header leaves the cookie in charge.
        """
        parts = request.META.get("HTTP_AUTHORIZATION", "").split()
        schemes = {scheme.lower() for scheme in api_settings.AUTH_HEADER_TYPES}
        return parts if parts and parts[0].lower() in schemes else None

    def raw_token_from_cookie(self, request) -> str | None:
        for name in SESSION_COOKIE_NAMES:
            value = request.COOKIES.get(name)
            if value:
                token = token_from_session_cookie(value)
                if token:
                    return token
        return None


class BearerJWTScheme(OpenApiAuthenticationExtension):
    """The scheme Swagger UI can use: a Bearer token. The cookie is described in the API's description.

    A browser page cannot set a Cookie header, so a cookie scheme offered there only ever gets 401.
    """

    target_class = "web.authentication.SessionCookieJWTAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "The auth service's HS256 JWT (claims `id`, `email`, `iat`). To try the API here: run "
                "`python manage.py mint_token --bearer`, click **Authorize**, paste the token."
            ),
        }
