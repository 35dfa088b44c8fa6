"""Routes outside the orders API: health probes, the schema's paths, the JSON bodies of Django-level errors."""

from __future__ import annotations

import asyncio
import sys

from django.http import JsonResponse
from health_check.views import HealthCheckView

from web.errors import api_exception_for, error_body
from web.health_checks import readiness_checks


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
readiness = ProbeView.as_view(checks=readiness_checks())


def schema_paths_without_optional_slash(endpoints, **kwargs):
    """drf-spectacular preprocessing hook: document `^api/orders/?$` as /api/orders, not /api/orders/.

    The routes accept both forms, as Express did; the Node clients call the one without the slash.
    """
    return [
        (path.rstrip("/") if regex.endswith("/?$") and path != "/" else path, regex, method, callback)
        for path, regex, method, callback in endpoints
    ]


def json_error(exc) -> JsonResponse:
    return JsonResponse(error_body(str(exc.detail)), status=exc.status_code)


HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
# Answers every operation can give whatever its own decorator lists, and those of operations with a body.
ERRORS_EVERY_OPERATION_CAN_ANSWER = {
    "405": "Method not allowed on this path (`Allow` lists the methods it answers)",
    "406": "The request's `Accept` header does not allow application/json",
    "503": "Service unavailable: the database cannot be reached; retry later",
}
ERRORS_OF_A_REQUEST_BODY = {
    "413": "Request body too large",
    "415": "The body is not application/json",
}


def schema_with_common_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: the answers the framework gives, documented on every operation."""
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            extra = ERRORS_EVERY_OPERATION_CAN_ANSWER | (ERRORS_OF_A_REQUEST_BODY if "requestBody" in operation else {})
            responses = operation.setdefault("responses", {})
            for code, description in extra.items():
                # A fresh dict each time: shared ones would become YAML anchors in the served document.
                content = {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}
                responses.setdefault(code, {"content": content, "description": description})
            operation["responses"] = dict(sorted(responses.items()))
    return result


def bad_request(request, exception=None):
    """handler400: every SuspiciousOperation outside DRF's views; a body over the limit is a 413."""
    known = api_exception_for(exception)
    return json_error(known) if known is not None else JsonResponse(error_body("Bad Request"), status=400)


def not_found(request, exception=None):
    return JsonResponse(error_body("Not Found"), status=404)


def permission_denied(request, exception=None):
    return JsonResponse(error_body("Forbidden"), status=403)


def server_error(request):
    """handler500, called inside Django's `except` block: sys.exc_info() is the fault being answered.

    A database that cannot be reached (the admin, sessions) is a 503 as in the API, not a 500.
    """
    known = api_exception_for(sys.exc_info()[1])
    return json_error(known) if known is not None else JsonResponse(error_body("Something went wrong"), status=500)
