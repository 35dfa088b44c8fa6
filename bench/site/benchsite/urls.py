"""The service's routes plus `GET /bench/bare`: a plain JsonResponse behind the same middleware."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from ticketing_orders.urls import *  # noqa: F403
from ticketing_orders.urls import urlpatterns as service_urlpatterns


def bare(request: HttpRequest) -> JsonResponse:
    """What a request costs with no domain work: the baseline of the HTTP scenarios."""
    return JsonResponse({"id": "000000000000000000000000", "status": "created", "version": 0})


urlpatterns = [path("bench/bare", bare), *service_urlpatterns]
