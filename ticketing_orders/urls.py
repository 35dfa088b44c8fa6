from django.conf import settings
from django.contrib import admin
from django.urls import path
from django_prometheus.exports import ExportToDjangoView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from messaging.asyncapi import AsyncAPIView
from orders import urls as orders_urls
from web import views as web_views

urlpatterns = [
    path("healthz", web_views.liveness, name="healthz"),
    path("readyz", web_views.readiness, name="readyz"),
    # Outside /api/orders: the ingress routes only that prefix, so metrics never leave the cluster.
    path("metrics", ExportToDjangoView, name="prometheus-django-metrics"),
    path(
        "api/orders/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="schema",
    ),
    path("api/orders/asyncapi.json", AsyncAPIView.as_view(), name="asyncapi"),
    path(
        "api/orders/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[], permission_classes=[]),
        name="swagger-ui",
    ),
]
if settings.ADMIN_ENABLED:
    admin.site.site_header = "Ticketing orders"
    admin.site.site_title = "Ticketing orders admin"
    # The admin has no public site of its own: its "View site" link would lead to a 404.
    admin.site.site_url = None
    # The app sidebar would take a quarter of a laptop screen from the order list; the breadcrumbs
    # and the index page lead everywhere it does.
    admin.site.enable_nav_sidebar = False
    urlpatterns.append(path(settings.ADMIN_PATH.removeprefix("/"), admin.site.urls))
urlpatterns += [
    # Last: /api/orders/<id> would otherwise match "schema", "docs" and "admin". Listed here rather
    # than include()d: one resolver fewer on every API request.
    *orders_urls.urlpatterns,
]

handler400 = web_views.bad_request
handler403 = web_views.permission_denied
handler404 = web_views.not_found
handler500 = web_views.server_error
