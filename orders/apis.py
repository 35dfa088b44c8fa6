"""The orders HTTP API: thin views over the selectors and services."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from orders.selectors import order_get_for_user, order_list
from orders.serializers import OrderCreateSerializer, OrderSerializer
from orders.services import order_cancel_by_user, order_create

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


class OrderListCreateApi(APIView):
    @extend_schema(operation_id="orders_list", responses={200: OrderSerializer(many=True), 401: NOT_AUTHORIZED})
    def get(self, request):
        """The caller's orders, oldest first, each with its ticket."""
        return Response(OrderSerializer(order_list(user_id=request.user.id), many=True).data)

    @extend_schema(
        operation_id="orders_create",
        request=OrderCreateSerializer,
        responses={
            201: OrderSerializer,
            400: OpenApiResponse(
                ErrorsSerializer, description="`TicketId must be provided` or `Ticket is already reserved`"
            ),
            401: NOT_AUTHORIZED,
            404: OpenApiResponse(ErrorsSerializer, description="No such ticket"),
            415: OpenApiResponse(ErrorsSerializer, description="The body is not application/json"),
        },
    )
    def post(self, request):
        """Reserve a ticket: the order holds it until `expiresAt`."""
        body = OrderCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        order = order_create(user_id=request.user.id, ticket_id=body.validated_data["ticketId"])
        return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)


class OrderDetailApi(APIView):
    @extend_schema(
        operation_id="orders_retrieve",
        parameters=[ORDER_ID],
        responses={200: OrderSerializer, 401: NOT_AUTHORIZED, 404: NOT_FOUND},
    )
    def get(self, request, order_id: str):
        """One of the caller's orders."""
        return Response(OrderSerializer(order_get_for_user(order_id=order_id, user_id=request.user.id)).data)

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
        order = order_get_for_user(order_id=order_id, user_id=request.user.id)
        order_cancel_by_user(order_id=order.id)
        return Response(status=status.HTTP_204_NO_CONTENT)
