"""What the API's request path skips or keeps for its speed (docs/profiles/server.md, "The request path"),
and that each shortcut answers exactly what the library it stands in for would."""

from __future__ import annotations

import pytest
from django.db import connection
from django.http import Http404, HttpResponse
from django.test import RequestFactory
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request

from testsupport.http import metric
from web.admin_middleware import AuthenticationMiddleware, MessageMiddleware, SessionMiddleware
from web.negotiation import ContentNegotiation


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
def test_sqlite_builds_the_metered_cursor_class_once_and_counts_every_query(client):
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite backend's own; PostgreSQL uses django-prometheus' as it is")
    connection.ensure_connection()
    first, second = connection.create_cursor(), connection.create_cursor()
    assert type(first) is type(second)
    assert type(first).__name__ == "CursorWrapper" and type(first).__module__ == "django_prometheus.db.common"
    first.close()
    second.close()

    before = metric(client.get("/metrics").content.decode(), "django_db_execute_total", alias="default")
    with connection.cursor() as cursor:
        for _ in range(3):
            cursor.execute("SELECT 1")
    after = metric(client.get("/metrics").content.decode(), "django_db_execute_total", alias="default")
    assert after - before == 3
