"""Orders in and out of JSON, in the shape the Node service answered with."""

from __future__ import annotations

from collections.abc import Mapping

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from core.ids import OBJECT_ID_RE, is_object_id
from core.json_numbers import json_number
from orders.models import Order
from orders.representation import to_iso_z
from tickets_replica.models import Ticket

TICKET_ID_MESSAGE = "TicketId must be provided"


class JSONNumberField(serializers.FloatField):
    """A float that prints as an integer when it is one (20, not 20.0), as JavaScript does."""

    def to_representation(self, value):
        return json_number(value)


# Versions count changes from 0; JavaScript clients read them as numbers, exact up to 2**53 - 1.
# Declared so the schema does not inherit the model field's 64-bit maximum, which Swagger UI
# shows rounded (9223372036854776000).
VERSION_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}


@extend_schema_field(VERSION_SCHEMA)
class VersionField(serializers.IntegerField):
    pass


class TicketSerializer(serializers.ModelSerializer):
    price = JSONNumberField()
    version = VersionField(read_only=True)

    class Meta:
        model = Ticket
        fields = ["id", "title", "price", "version"]


class OrderSerializer(serializers.ModelSerializer):
    """Output only: orders change through the services, never by writing this shape back."""

    userId = serializers.CharField(source="user_id")
    expiresAt = serializers.SerializerMethodField()
    ticket = TicketSerializer()
    version = VersionField(read_only=True)

    class Meta:
        model = Order
        fields = ["id", "userId", "status", "expiresAt", "ticket", "version"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_expiresAt(self, order: Order) -> str:
        return to_iso_z(order.expires_at)


@extend_schema_field({"type": "string", "pattern": f"^{OBJECT_ID_RE.pattern}$"})
class ObjectIdField(serializers.CharField):
    """A 24-hex id, stored lower-case; anything else (numbers, NUL, lone surrogates...) is `invalid`.

    Checked before CharField's own validators run, whose NUL and surrogate messages are not ours.
    """

    def to_internal_value(self, data):
        if not is_object_id(data):
            self.fail("invalid")
        return data.lower()


TICKET_ID_FIELD = {
    "help_text": "The ticket's 24-hex id (the alias `ticketID` is accepted too).",
    "error_messages": {k: TICKET_ID_MESSAGE for k in ("required", "null", "blank", "invalid")},
    "trim_whitespace": False,
}


class OrderCreateSerializer(serializers.Serializer):
    """`{"ticketId": "<24 hex>"}`; `ticketID` is accepted as an alias."""

    ticketId = ObjectIdField(**TICKET_ID_FIELD)

    def get_fields(self):
        # DRF deep-copies the declared fields for every serializer, each of their arguments too: about a
        # twentieth of a POST (docs/profiles/server.md). A new field from the same arguments is the same field.
        return {"ticketId": ObjectIdField(**TICKET_ID_FIELD)}

    def run_validation(self, data=empty):
        # A body that is not a JSON object (a list, a string, null) has no ticketId either,
        # which is what express-validator answered.
        return super().run_validation(data if isinstance(data, Mapping) else {})

    def to_internal_value(self, data):
        if isinstance(data, dict) and "ticketId" not in data and "ticketID" in data:
            data = {**data, "ticketId": data["ticketID"]}
        return super().to_internal_value(data)
