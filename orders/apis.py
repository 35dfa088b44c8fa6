"""The orders HTTP API: thin views over the selectors and services."""

from __future__ import annotations

import re

from django.http import HttpResponse, QueryDict
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.ids import OBJECT_ID_RE, is_object_id
from orders.exceptions import UnknownCursor
from orders.idempotency import idempotency_key_check, request_fingerprint
from orders.representation import order_row, order_to_dict, render_json
from orders.selectors import order_row_get_for_user, order_rows_for_user
from orders.serializers import OrderCreateSerializer, OrderSerializer
from orders.services import order_cancel_by_user, order_create, order_create_idempotent

ErrorsSerializer = inline_serializer(
    name="Errors",
    fields={
        "errors": serializers.ListField(
            child=inline_serializer(
                name="Error",
                fields={"message": serializers.CharField(), "field": serializers.CharField(required=False)},
            )
        )
    },
)
NOT_AUTHORIZED = OpenApiResponse(ErrorsSerializer, description="Not authorized: not signed in, or not the owner")
NOT_FOUND = OpenApiResponse(ErrorsSerializer, description="Not Found")
ORDER_ID = OpenApiParameter(
    "order_id", str, OpenApiParameter.PATH, description="The order's 24-hex id (anything else is a 404)"
)

MAX_PAGE_SIZE = 1000
LIMIT_MESSAGE = f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}"
AFTER_MESSAGE = "after must be an order id (24 hex)"
PAGE_LIMIT = OpenApiParameter(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
    OpenApiParameter.QUERY,
    description=(
        f"Paging: at most this many orders (1 to {MAX_PAGE_SIZE}; anything else is a 400 `{LIMIT_MESSAGE}`). "
        'While more remain, the response has a `Link: <...?limit=N&after=<last id>>; rel="next"` header. '
        "Without `limit` and `after`: every order."
    ),
)
PAGE_AFTER = OpenApiParameter(
    "after",
    str,
    OpenApiParameter.QUERY,
    pattern=f"^{OBJECT_ID_RE.pattern}$",
    description=(
        "Paging: only the orders after this one (the last id of the previous page), oldest first. Not 24 hex: "
        f"400 `{AFTER_MESSAGE}`. It must be one of the caller's orders: an unknown id and someone else's get "
        f"the same 400 `{UnknownCursor.message}`."
    ),
)
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
    OpenApiParameter.HEADER,
    description=(
        "Makes the create safe to retry: 1 to 255 printable ASCII characters, chosen by the client (a UUID), "
        "scoped to the signed-in user and kept for `IDEMPOTENCY_KEY_TTL_SECONDS` (a day by default). A repeat "
        "with the same body answers the first 201 again, byte for byte, with `Idempotent-Replayed: true`, and "
        "creates nothing. Only a created order keeps the key: after a 400 or 404 the same key may be tried again."
    ),
)
IDEMPOTENT_REPLAYED = OpenApiResponse(
    OrderSerializer,
    description=(
        "The order. With an `Idempotency-Key` already used with the same body, the first answer again, with an "
        "`Idempotent-Replayed: true` header"
    ),
)
# At most 4 digits: 1000 is the largest limit, and int() of a huge digit string is itself an error.
LIMIT_DIGITS = re.compile(r"[0-9]{1,4}")
JSON = "application/json"


def json_response(request: Request, data, status: int = status.HTTP_200_OK) -> HttpResponse:
    """What `Response(data, status)` would answer, encoded here rather than through DRF's renderer."""
    if request.accepted_media_type != JSON:
        # The client asked for something the renderer does itself (e.g. `application/json; indent=4`).
        return Response(data, status=status)
    # A ready HttpResponse skips DRF's per-response renderer context and its content-type negotiation
    # in finalize_response; the view's headers (Allow, Vary) are still added.
    return HttpResponse(render_json(data), status=status, content_type=JSON)


def page_parameters(query: QueryDict) -> tuple[int | None, str | None]:
    """`limit` and `after` from the query string, each None when absent; a ValidationError when bad."""
    limit = after = None
    if "limit" in query:
        values = query.getlist("limit")
        if len(values) != 1 or not LIMIT_DIGITS.fullmatch(values[0]) or not 1 <= int(values[0]) <= MAX_PAGE_SIZE:
            raise ValidationError({"limit": [LIMIT_MESSAGE]})
        limit = int(values[0])
    if "after" in query:
        values = query.getlist("after")
        if len(values) != 1 or not is_object_id(values[0]):
            raise ValidationError({"after": [AFTER_MESSAGE]})
        after = values[0].lower()
    return limit, after


class OrderListCreateApi(APIView):
    @extend_schema(
        operation_id="orders_list",
        parameters=[PAGE_LIMIT, PAGE_AFTER],
        responses={
            200: OrderSerializer(many=True),
            400: OpenApiResponse(ErrorsSerializer, description="A bad `limit` or `after` (`field` names it)"),
            401: NOT_AUTHORIZED,
        },
    )
    def get(self, request):
        """The caller's orders, oldest first, each with its ticket; a page of them with `limit`/`after`."""
        limit, after = page_parameters(request.query_params)
        # One row more than the page tells whether another page follows, without a COUNT.
        rows = order_rows_for_user(user_id=request.user.id, after=after, limit=None if limit is None else limit + 1)
        more = limit is not None and len(rows) > limit
        if more:
            rows = rows[:limit]
        response = json_response(request, [order_to_dict(row) for row in rows])
        if more:
            response["Link"] = f'<{request.path}?limit={limit}&after={rows[-1].id}>; rel="next"'
        return response

    @extend_schema(
        operation_id="orders_create",
        request=OrderCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: IDEMPOTENT_REPLAYED,
            400: OpenApiResponse(
                ErrorsSerializer,
                description=(
                    "`TicketId must be provided`, `Ticket is already reserved`, or a malformed `Idempotency-Key` "
                    "(`field: Idempotency-Key`)"
                ),
            ),
            401: NOT_AUTHORIZED,
            404: OpenApiResponse(ErrorsSerializer, description="No such ticket"),
            409: OpenApiResponse(
                ErrorsSerializer,
                description="A request with this `Idempotency-Key` is still in progress: retry (see `Retry-After`)",
            ),
            415: OpenApiResponse(ErrorsSerializer, description="The body is not application/json"),
            422: OpenApiResponse(
                ErrorsSerializer,
                description="This `Idempotency-Key` was already used with another body (`field: Idempotency-Key`)",
            ),
        },
    )
    def post(self, request):
        """Reserve a ticket: the order holds it until `expiresAt`."""
        # META rather than request.headers: no header, no extra work (HttpHeaders copies every header).
        key = request.META.get("HTTP_IDEMPOTENCY_KEY")
        if key is not None:
            key = idempotency_key_check(key)
        body = OrderCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ticket_id = body.validated_data["ticketId"]
        if key is None:
            order = order_create(user_id=request.user.id, ticket_id=ticket_id)
            return json_response(request, order_to_dict(order_row(order)), status=status.HTTP_201_CREATED)
        answer, replayed = order_create_idempotent(
            user_id=request.user.id, ticket_id=ticket_id, key=key, fingerprint=request_fingerprint(ticket_id=ticket_id)
        )
        # The stored bytes as they are, whatever the Accept header's options: a repeat must match the first.
        response = HttpResponse(answer, status=status.HTTP_201_CREATED, content_type=JSON)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class OrderDetailApi(APIView):
    @extend_schema(
        operation_id="orders_retrieve",
        parameters=[ORDER_ID],
        responses={200: OrderSerializer, 401: NOT_AUTHORIZED, 404: NOT_FOUND},
    )
    def get(self, request, order_id: str):
        """One of the caller's orders."""
        return json_response(request, order_to_dict(order_row_get_for_user(order_id=order_id, user_id=request.user.id)))

    @extend_schema(
        operation_id="orders_cancel",
        parameters=[ORDER_ID],
        responses={
            204: OpenApiResponse(description="Cancelled (or already cancelled: nothing changes)"),
            400: OpenApiResponse(ErrorsSerializer, description="Cannot cancel a completed order"),
            401: NOT_AUTHORIZED,
            404: NOT_FOUND,
        },
    )
    def delete(self, request, order_id: str):
        """Cancel one of the caller's orders, releasing its ticket."""
        order = order_row_get_for_user(order_id=order_id, user_id=request.user.id)
        order_cancel_by_user(order_id=order.id)
        return Response(status=status.HTTP_204_NO_CONTENT)
