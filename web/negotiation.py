"""Content negotiation: DRF's, with its commonest answer found without parsing the Accept header."""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's DefaultContentNegotiation, short-cut where it would answer the same: a request that accepts
    anything (no Accept header, or `*/*` as curl and fetch send) and asks for no format (`?format=`, a
    suffix) gets the view's first renderer. Parsing the header and the query string for that answer cost
    about a twentieth of a `GET /api/orders/:id` (docs/profiles/server.md); any other request is
    negotiated by DRF."""

    def select_renderer(self, request, renderers, format_suffix=None):
        meta = request.META
        if (
            format_suffix is None
            and renderers
            and meta.get("HTTP_ACCEPT", "*/*").strip() == "*/*"
            and self.settings.URL_FORMAT_OVERRIDE not in meta.get("QUERY_STRING", "")
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
