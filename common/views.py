"""Routes outside the orders API: health probes, the schema's paths, the JSON bodies of Django-level errors."""

from __future__ import annotations

import asyncio

from django.http import JsonResponse
from health_check.views import HealthCheckView

from common.exceptions import error_body


class ProbeView(HealthCheckView):
    """django-health-check's runner, answered in JSON with 503 (not 500) when a check fails."""

    async def get(self, request, *args, **kwargs):
        with self.get_executor() as executor:
            self.results = await asyncio.gather(*(check.get_result(executor) for check in self.get_checks()))
        failed = any(result.error for result in self.results)
        checks = {repr(r.check): ("OK" if not r.error else str(r.error)) for r in self.results}
        return JsonResponse(
            {"status": "unavailable" if failed else "ok", "checks": checks},
            status=503 if failed else 200,
        )


liveness = ProbeView.as_view(checks=())
readiness = ProbeView.as_view(checks=("health_check.checks.Database",))


def schema_paths_without_optional_slash(endpoints, **kwargs):
    """drf-spectacular preprocessing hook: document `^api/orders/?$` as /api/orders, not /api/orders/.

    The routes accept both forms, as Express did; the Node clients call the one without the slash.
    """
    return [
        (path.rstrip("/") if regex.endswith("/?$") and path != "/" else path, regex, method, callback)
        for path, regex, method, callback in endpoints
    ]


def bad_request(request, exception=None):
    return JsonResponse(error_body("Bad Request"), status=400)


def not_found(request, exception=None):
    return JsonResponse(error_body("Not Found"), status=404)


def permission_denied(request, exception=None):
    return JsonResponse(error_body("Forbidden"), status=403)


def server_error(request):
    return JsonResponse(error_body("Something went wrong"), status=500)
