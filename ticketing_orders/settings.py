"""Settings for the orders service, read from the environment at start."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from web.access_log import json_formatter

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "data"))


def envbool(name: str, default: str = "False") -> bool:
    value = os.environ.get(name, default)
    if value in ("True", "true", "1", "yes", "on"):
        return True
    if value in ("False", "false", "0", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def envsecret(name: str) -> str | None:
    """The variable itself, or the contents of the file that `NAME_FILE` points at."""
    if value := os.environ.get(name):
        return value
    if path := os.environ.get(f"{name}_FILE"):
        return Path(path).read_text().strip() or None
    return None


def envfloat(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number") from exc


def envint(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number") from exc


def persistent_secret_key() -> str:
    """A random key kept in the data folder, so a single host needs no configuration.

    Deployments with several replicas set SECRET_KEY (the k8s manifests do).
    """
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


JWT_KEY = envsecret("JWT_KEY")
if not JWT_KEY:
    raise ImproperlyConfigured(
        "JWT_KEY is not set: the orders service cannot verify session tokens without the "
        "HMAC key shared with the auth service. Set JWT_KEY (or JWT_KEY_FILE) and start again."
    )

DEBUG = envbool("DEBUG")
SECRET_KEY = envsecret("SECRET_KEY") or persistent_secret_key()
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "health_check",
    "web",
    "messaging",
    "tickets_replica",
    "orders",
]

# Sessions, staff sign-in and messages serve the admin's pages alone (web/admin_middleware.py).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "web.admin_middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "web.admin_middleware.AuthenticationMiddleware",
    "web.admin_middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ticketing_orders.urls"
WSGI_APPLICATION = "ticketing_orders.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite in the data folder unless DATABASE_URL says otherwise.
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'orders.sqlite3'}"
if DATABASE_URL.startswith(("mongodb://", "mongodb+srv://")):
    # MongoDB through the official django-mongodb-backend 5.2.x (requirements-mongodb.txt);
    # what it needs, what was checked and its limits: docs/mongodb.md.
    import importlib.util
    from urllib.parse import unquote, urlsplit

    if importlib.util.find_spec("django_mongodb_backend") is None:
        raise ImproperlyConfigured(
            "DATABASE_URL is a MongoDB URL but django-mongodb-backend is not installed: "
            "pip install -r requirements-mongodb.txt"
        )
    # The database is the URL's path (mongodb://host:27017/orders?replicaSet=rs0). Read here
    # rather than by the backend, which would resolve a mongodb+srv:// name in DNS at start.
    _mongodb_name = unquote(urlsplit(DATABASE_URL).path.lstrip("/"))
    if not _mongodb_name:
        raise ImproperlyConfigured(
            "DATABASE_URL must name the database after the hosts, e.g. mongodb://localhost:27017/orders"
        )
    # The whole connection string goes in HOST (django-mongodb-backend >= 5.2.1; parse_uri() is
    # deprecated). The backend keeps one MongoClient pool per alias, so CONN_MAX_AGE and
    # CONN_HEALTH_CHECKS do not apply.
    # pymongo waits on nothing unbounded: a primary to select, a TCP connect, a socket read, and the whole
    # operation (timeoutMS, its client-side operation timeout, which also bounds retries). A parameter
    # written in DATABASE_URL's query string wins over these.
    DATABASES = {
        "default": {
            "ENGINE": "django_mongodb_backend",
            "HOST": DATABASE_URL,
            "NAME": _mongodb_name,
            "OPTIONS": {
                "serverSelectionTimeoutMS": envint("MONGODB_SERVER_SELECTION_TIMEOUT_MS", 5000),
                "connectTimeoutMS": envint("MONGODB_CONNECT_TIMEOUT_MS", 3000),
                "socketTimeoutMS": envint("MONGODB_SOCKET_TIMEOUT_MS", 10000),
                "timeoutMS": envint("MONGODB_TIMEOUT_MS", 10000),
            },
        }
    }
    # MongoDB has no AutoField. Our own models name their primary keys; this covers the rest.
    DEFAULT_AUTO_FIELD = "django_mongodb_backend.fields.ObjectIdAutoField"
    # Contrib apps whose AppConfig pins AutoField get ObjectIdAutoField configs and migrations.
    _mongodb_app_configs = {
        "django.contrib.admin": "mongo_migrations.apps.MongoAdminConfig",
        "django.contrib.auth": "mongo_migrations.apps.MongoAuthConfig",
        "django.contrib.contenttypes": "mongo_migrations.apps.MongoContentTypesConfig",
    }
    INSTALLED_APPS = [_mongodb_app_configs.get(app, app) for app in INSTALLED_APPS]
    MIGRATION_MODULES = {
        "admin": "mongo_migrations.admin",
        "auth": "mongo_migrations.auth",
        "contenttypes": "mongo_migrations.contenttypes",
    }
else:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
    DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        if DATABASES["default"]["NAME"] not in ("", ":memory:"):
            Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # A connection per thread kept between its requests: opening one (and its PRAGMAs) was a sixth
        # of a read request's CPU (docs/profiles/http.md). No transaction stays open between requests.
        DATABASES["default"]["CONN_MAX_AGE"] = 60
        DATABASES["default"]["OPTIONS"] = {
            # Writers take the lock when their transaction begins and queue behind each other
            # instead of failing with "database is locked" halfway through.
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-orders.sqlite3")}
    elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Every wait on PostgreSQL is bounded (docs/RELIABILITY.md, "Gray failures"). Client side, for a
        # link that drops packets without a word: a connect gives up after connect_timeout; data sent and
        # never acknowledged closes the connection after tcp_user_timeout; an idle wait for an answer is
        # probed by keepalives. A healthy server acknowledges both however long its query runs, so none
        # of them cuts a slow answer short. Server side, per role (DATABASE_ROLES below): how long a
        # statement may run, wait for a lock, or sit idle inside a transaction.
        DATABASES["default"]["OPTIONS"] = {
            "connect_timeout": envint("DB_CONNECT_TIMEOUT_SECONDS", 3),  # libpq: whole seconds, at least 2
            "keepalives": 1,
            "keepalives_idle": envint("DB_KEEPALIVES_IDLE_SECONDS", 3),
            "keepalives_interval": envint("DB_KEEPALIVES_INTERVAL_SECONDS", 1),
            "keepalives_count": envint("DB_KEEPALIVES_COUNT", 3),
            "tcp_user_timeout": envint("DB_TCP_USER_TIMEOUT_MS", 5000),
            **DATABASES["default"].get("OPTIONS", {}),
        }

# The server's end of the same link, for every role (seconds): a client that fell silent inside a transaction
# (its packets dropped, no reset) is probed while the server waits for its next command, and dropped after
# idle + interval x count, so the row locks its transaction holds are released within seconds, not at
# idle_in_transaction_session_timeout (the worker's 60 s, long after the link returned). A busy server never
# waits on the client, and a live client's kernel answers the probes, so no slow statement is cut short.
DATABASE_SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": envint("DB_SERVER_KEEPALIVES_IDLE_SECONDS", 3),
    "tcp_keepalives_interval": envint("DB_SERVER_KEEPALIVES_INTERVAL_SECONDS", 1),
    "tcp_keepalives_count": envint("DB_SERVER_KEEPALIVES_COUNT", 3),
}
# PostgreSQL's server-side bounds (the timeouts in milliseconds, 0: none; the keepalives above) for each kind
# of process, set when its connection opens (core.transactions.use_database_role): the API's requests are
# short, the worker applies batches of events, `migrate` may rewrite a table and must never be cut short.
# `rebuild_replica` uses the worker's.
DATABASE_ROLES = {
    "api": {
        "statement_timeout": envint("DB_STATEMENT_TIMEOUT_MS", 5000),
        "lock_timeout": envint("DB_LOCK_TIMEOUT_MS", 3000),
        "idle_in_transaction_session_timeout": envint("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 10000),
        **DATABASE_SERVER_KEEPALIVES,
    },
    "worker": {
        "statement_timeout": envint("WORKER_DB_STATEMENT_TIMEOUT_MS", 30000),
        "lock_timeout": envint("WORKER_DB_LOCK_TIMEOUT_MS", 10000),
        "idle_in_transaction_session_timeout": envint("WORKER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60000),
        **DATABASE_SERVER_KEEPALIVES,
    },
    "migrate": {
        "statement_timeout": envint("MIGRATE_DB_STATEMENT_TIMEOUT_MS", 0),
        "lock_timeout": envint("MIGRATE_DB_LOCK_TIMEOUT_MS", 0),
        "idle_in_transaction_session_timeout": envint("MIGRATE_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 0),
        **DATABASE_SERVER_KEEPALIVES,
    },
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    from core.transactions import session_options

    # The API's, unless a command picks another role before it connects; `options` in DATABASE_URL come after.
    DATABASE_URL_OPTIONS = DATABASES["default"]["OPTIONS"].get("options", "")
    DATABASES["default"]["OPTIONS"]["options"] = session_options(DATABASE_ROLES["api"], DATABASE_URL_OPTIONS)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Admin dates as 2026-11-25 10:15 (UTC) instead of "Nov. 25, 2026, 10:15 a.m.".
FORMAT_MODULE_PATH = ["web.formats"]

# Static files (admin, Swagger UI) are served by whitenoise under the ingress prefix.
STATIC_URL = "/api/orders/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed names once `collectstatic` has run; the plain names, served by whitenoise
    # from the apps' folders, when it has not (the contract starts with migrate, then gunicorn).
    "staticfiles": {"BACKEND": "web.static_storage.ManifestIfCollectedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_MANIFEST_STRICT = False

# Request bodies: a few hundred bytes in practice; over this is 413 `Request body too large`
# (chunked bodies included: web.handlers stops reading one byte past it).
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # Django's default, 2.5 MiB
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000  # query-string and form fields; more is 400
# Requests of one server process running in Django at once, once their bodies are in (web/handlers.py);
# the others wait asleep, up to the wait, then get 503 `Service unavailable`. 0: no limit.
# Chosen by measurement (docs/profiles/server.md, "Request slots").
API_REQUEST_SLOTS = envint("API_REQUEST_SLOTS", 4)
API_REQUEST_SLOT_WAIT_SECONDS = envfloat("API_REQUEST_SLOT_WAIT_SECONDS", 10)

# Security. TLS ends at the ingress, which sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT")
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "True")
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "True")
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", str(not DEBUG))
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", str(not DEBUG))
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]
if not SECURE_SSL_REDIRECT:
    # The contract serves plain HTTP on port 3000 behind the TLS-terminating ingress.
    SILENCED_SYSTEM_CHECKS = ["security.W008"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["web.authentication.SessionCookieJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["web.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "web.negotiation.ContentNegotiation",
    "EXCEPTION_HANDLER": "web.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

# The auth service signs {"id", "email", "iat"} with HS256 and JWT_KEY, without "exp".
SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_KEY,
    "VERIFYING_KEY": None,
    "AUTH_TOKEN_CLASSES": ("web.authentication.SessionToken",),
    "USER_ID_CLAIM": "id",
    "TOKEN_TYPE_CLAIM": None,
    "JTI_CLAIM": None,
    # Tolerate a few seconds of clock skew with the auth service (`iat` slightly in the future).
    "LEEWAY": 5,
    "AUTH_HEADER_TYPES": ("Bearer",),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Ticketing orders service",
    "DESCRIPTION": (
        "Reserve tickets by creating orders; list, view and cancel your orders.\n\n"
        "**Signing in.** Browsers send the auth service's `session` cookie (cookie-session: standard "
        'base64 of `{"jwt": "<HS256 token with claims id, email, iat>"}`; the 1.x name `express:sess` '
        "works too). API clients send the same token as `Authorization: Bearer <token>`; a Bearer "
        "header that is wrong never falls back to the cookie.\n\n"
        "**Trying it here.** A page cannot send a cookie of its own, so this page uses Bearer: run "
        "`python manage.py mint_token --bearer` (with the service's `JWT_KEY`), click **Authorize**, "
        "paste the token, then **Try it out**."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["web.views.schema_paths_without_optional_slash"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "web.views.schema_with_common_errors",
    ],
}

# The admin. A deployment that exposes only the API sets ADMIN_ENABLED=false: no admin routes,
# no admin app, no login to attack.
ADMIN_ENABLED = envbool("ADMIN_ENABLED", "True")
ADMIN_PATH = "/api/orders/admin/"
if ADMIN_ENABLED:
    # Login throttling (django-axes): after AXES_FAILURE_LIMIT failed logins for a username, or from
    # one client address, that username or address is locked for ADMIN_LOCKOUT_MINUTES. The address
    # is the one the ingress appended to X-Forwarded-For (web.admin_site.client_ip).
    INSTALLED_APPS += ["axes"]
    MIDDLEWARE += ["axes.middleware.AxesMiddleware"]
    AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
    AXES_FAILURE_LIMIT = int(os.environ.get("ADMIN_LOGIN_FAILURE_LIMIT", "5"))
    AXES_COOLOFF_TIME = envfloat("ADMIN_LOCKOUT_MINUTES", 15) / 60  # hours
    AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
    AXES_CLIENT_IP_CALLABLE = "web.admin_site.client_ip"
    AXES_RESET_ON_SUCCESS = True
    AXES_ONLY_ADMIN_SITE = True
    AXES_LOCKOUT_CALLABLE = "web.admin_site.login_locked_out"
else:
    INSTALLED_APPS.remove("django.contrib.admin")

# Orders and events.
EXPIRATION_WINDOW_SECONDS = int(os.environ.get("EXPIRATION_WINDOW_SECONDS", "900"))
# The safety net: an order still active this long after expiresAt (its expiration:complete never
# came) is expired by the worker itself, and how often the worker looks for such orders.
EXPIRATION_GRACE_SECONDS = envfloat("EXPIRATION_GRACE_SECONDS", 300)
EXPIRATION_SWEEP_SECONDS = envfloat("EXPIRATION_SWEEP_SECONDS", 30)
# How long an Idempotency-Key of POST /api/orders is remembered; older keys are ignored, then purged.
IDEMPOTENCY_KEY_TTL_SECONDS = envfloat("IDEMPOTENCY_KEY_TTL_SECONDS", 86400)
# How often the worker deletes expired keys: under WORKER_STALL_SECONDS, as its loop beats once a round.
IDEMPOTENCY_KEY_PURGE_SECONDS = 30.0
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
NATS_STREAM = os.environ.get("NATS_STREAM", "ticketing")
NATS_STREAM_REPLICAS = int(os.environ.get("NATS_STREAM_REPLICAS", "1"))  # 3 on a clustered JetStream
NATS_QUEUE_GROUP = "orders-service"
# Bounded waits on NATS (messaging.jetstream.connect). A PING every NATS_PING_INTERVAL_SECONDS, and a link
# with more than NATS_MAX_OUTSTANDING_PINGS unanswered is dead: the client moves to another server of
# the cluster about (pings + 1) x interval = 9 s after the link went silent, instead of nats-py's 6 min.
NATS_CONNECT_TIMEOUT_SECONDS = envfloat("NATS_CONNECT_TIMEOUT_SECONDS", 2)
NATS_PING_INTERVAL_SECONDS = envfloat("NATS_PING_INTERVAL_SECONDS", 3)
NATS_MAX_OUTSTANDING_PINGS = envint("NATS_MAX_OUTSTANDING_PINGS", 2)
# One publish's PubAck, and one JetStream API request (stream and consumer info); past it, retried.
NATS_PUBLISH_TIMEOUT_SECONDS = envfloat("NATS_PUBLISH_TIMEOUT_SECONDS", 5)
NATS_REQUEST_TIMEOUT_SECONDS = envfloat("NATS_REQUEST_TIMEOUT_SECONDS", 5)
# The worker's /metrics and /healthz (0: any free port). /healthz fails when a loop has made no
# progress for WORKER_STALL_SECONDS, or NATS has been unreachable for WORKER_NATS_DOWN_SECONDS.
WORKER_METRICS_HOST = os.environ.get("WORKER_METRICS_HOST", "0.0.0.0")  # noqa: S104 (the pod's probes)
WORKER_METRICS_PORT = int(os.environ.get("WORKER_METRICS_PORT", "9102"))
WORKER_STALL_SECONDS = envfloat("WORKER_STALL_SECONDS", 60)
WORKER_NATS_DOWN_SECONDS = envfloat("WORKER_NATS_DOWN_SECONDS", 120)
WORKER_DATABASE_DOWN_SECONDS = envfloat("WORKER_DATABASE_DOWN_SECONDS", 120)
# Work the worker does every so often beside its listeners: (name, function, the setting giving its
# interval in seconds). Wired here so the apps never import the worker that runs them.
WORKER_PERIODIC_TASKS = [
    ("expiration sweep", "orders.expiration.sweep_overdue_orders", "EXPIRATION_SWEEP_SECONDS"),
    ("idempotency key purge", "orders.idempotency.idempotency_keys_purge", "IDEMPOTENCY_KEY_PURGE_SECONDS"),
]
# The listeners `run_listeners` runs (and the admin's retry uses), by app.
EVENT_LISTENERS = ["tickets_replica.listeners.LISTENERS", "orders.listeners.LISTENERS"]
# How long JetStream remembers a Nats-Msg-Id; a relay that died between publishing and
# marking an outbox row sent must be back within this window for the re-send to be dropped.
NATS_DUPLICATE_WINDOW_SECONDS = envfloat("NATS_DUPLICATE_WINDOW_SECONDS", 600)
# The outbox relay wakes when a transaction commits (PostgreSQL LISTEN/NOTIFY, SQLite's data_version,
# checked every OUTBOX_SQLITE_WAKE_SECONDS) and re-reads the outbox at least every OUTBOX_POLL_SECONDS,
# so a lost wake-up costs one poll interval. MongoDB has no wake-up: the poll interval is its latency.
OUTBOX_POLL_SECONDS = envfloat(
    "OUTBOX_POLL_SECONDS", 0.05 if DATABASES["default"]["ENGINE"] == "django_mongodb_backend" else 1
)
OUTBOX_SQLITE_WAKE_SECONDS = envfloat("OUTBOX_SQLITE_WAKE_SECONDS", 0.005)
EVENT_RETRY_BASE_SECONDS = envfloat("EVENT_RETRY_BASE_SECONDS", 0.5)
EVENT_RETRY_MAX_SECONDS = envfloat("EVENT_RETRY_MAX_SECONDS", 10)
EVENT_MAX_DELIVERIES = int(os.environ.get("EVENT_MAX_DELIVERIES", "10"))
# What a killed worker held comes back to the others after this long. A batch applies in well under
# a second; a redelivery of one that was merely slow changes nothing (every apply is idempotent).
EVENT_ACK_WAIT_SECONDS = envfloat("EVENT_ACK_WAIT_SECONDS", 10)

# Observability: Prometheus metrics at /metrics (django-prometheus; ticketing_orders/server.py and
# gunicorn.conf.py set PROMETHEUS_MULTIPROC_DIR so every worker process is counted), a request id on
# every request (web/request_id.py on django-guid: X-Request-ID taken when it is a UUID, generated
# otherwise, and returned), an access line per request carrying it (whichever server runs the app), and logs as
# plain text or, with LOG_FORMAT=json, one JSON object a line (python-json-logger).
INSTALLED_APPS += ["django_guid", "django_prometheus"]
MIDDLEWARE = [
    "web.access_log.AccessLogMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "web.request_id.RequestIdMiddleware",
    *MIDDLEWARE,
    "web.metrics_middleware.PrometheusAfterMiddleware",
]
# django-prometheus' wrappers of the same backends count queries, errors and connections.
_PROMETHEUS_DB_ENGINES = {
    "django.db.backends.postgresql": "web.db.postgresql",  # django-prometheus', queries metered by web.db.cursors
    "django.db.backends.sqlite3": "web.db.sqlite3",  # the same, its cursor class built once
}
DATABASES["default"]["ENGINE"] = _PROMETHEUS_DB_ENGINES.get(
    DATABASES["default"]["ENGINE"], DATABASES["default"]["ENGINE"]
)
DJANGO_GUID = {"GUID_HEADER_NAME": "X-Request-ID", "VALIDATE_GUID": True, "EXPOSE_HEADER": False}
# Traces (core/tracing.py, README "Tracing"): first, so the request's span covers every other
# middleware. The SDK and its exporter are configured from the standard OTEL_* variables at start.
MIDDLEWARE.insert(0, "core.tracing.TracingMiddleware")

LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every record gets `correlation_id`: the request's id inside a request, "-" elsewhere.
    "filters": {"request_id": {"()": "web.request_id_logging.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"},
        "json": json_formatter(),
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "nats": {"level": "WARNING"},
        # It logs every request's id at INFO; the id is in every line already.
        "django_guid": {"level": "WARNING"},
        # Its start-up banner, in every process and command; its login events stay at INFO.
        "axes.apps": {"level": "WARNING"},
    },
}
