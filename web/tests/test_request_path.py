"""What the API's request path skips or keeps for its speed (docs/profiles/server.md, "The request path"),
and that each shortcut answers exactly what the library it stands in for would."""

from __future__ import annotations

from collections import Counter

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.http import Http404, HttpResponse
from django.test import RequestFactory
from django_guid.config import settings as guid_settings
from django_prometheus.db.common import ExportingCursorWrapper
from prometheus_client import REGISTRY
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request

from web.admin_middleware import AuthenticationMiddleware, MessageMiddleware, SessionMiddleware
from web.negotiation import ContentNegotiation
from web.request_id import RequestIdMiddleware


def test_sessions_staff_sign_in_and_messages_are_set_up_on_the_admins_pages_only(settings):
    def attributes_seen(path: str) -> set[str]:
        seen: set[str] = set()

        def view(request):
            seen.update(name for name in ("session", "user", "_messages") if hasattr(request, name))
            return HttpResponse()

        SessionMiddleware(AuthenticationMiddleware(MessageMiddleware(view)))(RequestFactory().get(path))
        return seen

    for path in ("/api/orders", "/api/orders/abc", "/healthz", "/api/orders/admin"):
        assert attributes_seen(path) == set(), path
    assert attributes_seen(settings.ADMIN_PATH + "login/") == {"session", "user", "_messages"}


@pytest.mark.parametrize(
    "accept", [None, "*/*", " */* ", "", "application/json", "text/html", "*/*;q=0.5", "application/json; indent=4"]
)
@pytest.mark.parametrize("query", ["", "limit=2", "format=json", "format=api", "after=x&format=json"])
@pytest.mark.parametrize("renderers", [[JSONRenderer], [BrowsableAPIRenderer, JSONRenderer]], ids=["json", "browsable"])
def test_negotiation_answers_what_drfs_default_answers(accept, query, renderers):
    meta = {} if accept is None else {"HTTP_ACCEPT": accept}

    def negotiate(negotiation):
        request = Request(RequestFactory().get("/api/orders", QUERY_STRING=query, **meta))
        try:
            renderer, media_type = negotiation.select_renderer(request, [renderer() for renderer in renderers])
        except (NotAcceptable, Http404) as exc:
            return type(exc), str(exc)
        return type(renderer), media_type

    assert negotiate(ContentNegotiation()) == negotiate(DefaultContentNegotiation())


@pytest.mark.django_db
def test_an_accept_header_the_api_cannot_satisfy_is_still_406(signed_in):
    for accept in ("text/html", ""):
        response = signed_in.get("/api/orders", HTTP_ACCEPT=accept)
        assert response.status_code == 406, accept
        assert response.json() == {"errors": [{"message": "Could not satisfy the request Accept header."}]}


@pytest.mark.django_db
def test_sqlite_builds_the_metered_cursor_class_once(client):
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite backend's own; PostgreSQL's builds one per connection")
    connection.ensure_connection()
    first, second = connection.create_cursor(), connection.create_cursor()
    assert type(first) is type(second)
    assert type(first).__name__ == "CursorWrapper" and type(first).__module__ == "web.db.cursors"
    first.close()
    second.close()


@pytest.mark.django_db
def test_the_metered_cursor_counts_what_django_prometheus_counts(make_ticket):
    """Queries, executemany's rows, each query's duration and its errors by type, as django-prometheus' own
    cursor counts the same statements on the same database."""
    ours = type(connection.cursor().cursor)
    assert ours.__module__ == "web.db.cursors"
    theirs = ExportingCursorWrapper(ours.__mro__[1], connection.alias, connection.vendor)
    ticket_ids = [[make_ticket().id], [make_ticket().id]]

    def counted(cursor_class: type) -> Counter:
        def samples() -> Counter:
            return Counter(
                {
                    (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                    for family in REGISTRY.collect()
                    if family.name.startswith("django_db_")
                    for sample in family.samples
                    if sample.labels.get("alias") == connection.alias
                    and "le" not in sample.labels
                    and not sample.name.endswith(("_sum", "_created"))
                }
            )

        before = samples()
        with pytest.raises(Exception, match="no_such_table"), transaction.atomic():
            raw = connection.connection
            cursor = raw.cursor(factory=cursor_class) if connection.vendor == "sqlite" else cursor_class(raw)
            for _ in range(3):
                cursor.execute("SELECT 1")
            cursor.executemany("UPDATE tickets_replica_ticket SET version = version WHERE id = %s", ticket_ids)
            cursor.execute("SELECT * FROM no_such_table")
        return samples() - before

    assert counted(ours) == counted(theirs) != Counter()


@pytest.mark.parametrize("setting", [{"IGNORE_URLS": ["healthz"]}, {"EXPOSE_HEADER": True}])
def test_the_request_id_middleware_refuses_django_guids_settings_it_does_not_follow(monkeypatch, setting):
    monkeypatch.setattr(guid_settings, "settings", {**guid_settings.settings, **setting})
    with pytest.raises(ImproperlyConfigured, match="django-guid's own middleware"):
        RequestIdMiddleware(lambda request: HttpResponse())
    monkeypatch.undo()
    assert RequestIdMiddleware(lambda request: HttpResponse())(RequestFactory().get("/healthz"))["X-Request-ID"]
