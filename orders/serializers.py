"""Orders in and out of JSON, in the shape the Node service answered with."""

from __future__ import annotations

from collections.abc import Mapping

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from common.ids import is_object_id
from common.numbers import json_number
from orders.models import Order
from orders.services import to_iso_z
from tickets_replica.models import Ticket

TICKET_ID_MESSAGE = "TicketId must be provided"


class JSONNumberField(serializers.FloatField):
    """A float that prints as an integer when it is one (20, not 20.0), as JavaScript does."""

    def to_representation(self, value):
        return json_number(value)


class TicketSerializer(serializers.ModelSerializer):
    price = JSONNumberField()

    class Meta:
        model = Ticket
        fields = ["id", "title", "price", "version"]


class OrderSerializer(serializers.ModelSerializer):
    """Output only: orders change through the services, never by writing this shape back."""

    userId = serializers.CharField(source="user_id")
    expiresAt = serializers.SerializerMethodField()
    ticket = TicketSerializer()

    class Meta:
        model = Order
        fields = ["id", "userId", "status", "expiresAt", "ticket", "version"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_expiresAt(self, order: Order) -> str:
        return to_iso_z(order.expires_at)


class StringField(serializers.CharField):
    """A CharField that refuses numbers rather than str()-ing them: 123456789012345678901234 is not an id."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class OrderCreateSerializer(serializers.Serializer):
    """`{"ticketId": "<24 hex>"}`; `ticketID` is accepted as an alias."""

    ticketId = StringField(
        help_text="The ticket's 24-hex id (the alias `ticketID` is accepted too).",
        error_messages={k: TICKET_ID_MESSAGE for k in ("required", "null", "blank", "invalid")},
        trim_whitespace=False,
    )

    def run_validation(self, data=empty):
        # A body that is not a JSON object (a list, a string, null) has no ticketId either,
        # which is what express-validator answered.
        return super().run_validation(data if isinstance(data, Mapping) else {})

    def to_internal_value(self, data):
        if isinstance(data, dict) and "ticketId" not in data and "ticketID" in data:
            data = {**data, "ticketId": data["ticketID"]}
        return super().to_internal_value(data)

    def validate_ticketId(self, value: str) -> str:
        if not is_object_id(value):
            raise serializers.ValidationError(TICKET_ID_MESSAGE)
        return value.lower()
