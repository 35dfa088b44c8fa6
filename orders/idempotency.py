"""`Idempotency-Key` on POST /api/orders: the key's rules, its record beside the order, and its purge."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import re

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection
from django.utils import timezone

from core.ids import new_object_id
from core.transactions import atomic
from orders.exceptions import IdempotencyKeyInProgress, IdempotencyKeyMalformed
from orders.models import IdempotencyKey
from orders.representation import render_json

logger = logging.getLogger(__name__)

# The contract's key: 1 to 255 printable ASCII characters (space to tilde), taken as sent.
IDEMPOTENCY_KEY_RE = re.compile(r"[\x20-\x7e]{1,255}")
# Databases the hand-written statements below run on; any other backend (MongoDB) takes the ORM path.
SQL_VENDORS = frozenset({"sqlite", "postgresql"})
PURGE_BATCH = 1000


def idempotency_key_check(value: str) -> str:
    """The header's value if it is a well-formed key; IdempotencyKeyMalformed if not."""
    # WSGI hands header bytes over as latin-1 text: a byte over 0x7e is a character the pattern refuses.
    if IDEMPOTENCY_KEY_RE.fullmatch(value) is None:
        raise IdempotencyKeyMalformed()
    return value


def request_fingerprint(*, ticket_id: str) -> str:
    """What identifies a create request: sha256 of the request as validated, not of its raw bytes.

    Spacing, key order, fields the service ignores, the `ticketID` alias and the hex digits' case
    do not change what is asked for, so they do not make a retry "another body".
    """
    return hashlib.sha256(render_json({"ticketId": ticket_id})).hexdigest()


@dataclasses.dataclass(frozen=True)
class StoredAnswer:
    id: str
    fingerprint: str
    response: bytes
    expired: bool  # older than IDEMPOTENCY_KEY_TTL_SECONDS: to be treated as absent


def idempotency_key_stored(*, user_id: str, key: str) -> StoredAnswer | None:
    """The answer stored under the user's `key`, unless it has expired; read without any lock.

    A record never changes once written, so a repeat needs no transaction: on SQLite it does not
    queue for the write lock, on PostgreSQL it does not meet the advisory lock of another repeat.
    """
    found = _find(user_id=user_id, key=key)
    return None if found is None or found.expired else found


def idempotency_key_claim(*, user_id: str, key: str) -> StoredAnswer | None:
    """Hold `key` for the rest of the transaction; the answer stored under it, if it has not expired.

    Must run inside the transaction that will record the key. A request holding the key in another
    transaction makes this raise IdempotencyKeyInProgress (PostgreSQL), or waits for it to end
    (SQLite, where an IMMEDIATE transaction already excludes every other writer). An expired record
    is deleted here, so the key is free again before the purge comes round.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_TRY_LOCK, [_ADVISORY_NAMESPACE, _advisory_lock_id(user_id, key)])
            if not cursor.fetchone()[0]:
                raise IdempotencyKeyInProgress()
    found = _find(user_id=user_id, key=key)
    if found is not None and found.expired:
        IdempotencyKey.objects.filter(id=found.id).delete()
        return None
    return found


def _find(*, user_id: str, key: str) -> StoredAnswer | None:
    cutoff = timezone.now() - dt.timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)
    if connection.vendor in SQL_VENDORS:
        with connection.cursor() as cursor:
            cursor.execute(_SELECT_RECORD, [connection.ops.adapt_datetimefield_value(cutoff), user_id, key])
            row = cursor.fetchone()
        if row is None:
            return None
        record_id, fingerprint, response, expired = row
        return StoredAnswer(id=record_id, fingerprint=fingerprint, response=response.encode(), expired=bool(expired))
    record = IdempotencyKey.objects.filter(user_id=user_id, key=key).first()
    if record is None:
        return None
    return StoredAnswer(
        id=record.id,
        fingerprint=record.fingerprint,
        response=record.response.encode(),
        expired=record.created_at < cutoff,
    )


def idempotency_key_record(*, user_id: str, key: str, fingerprint: str, order_id: str, response: bytes) -> None:
    """Store `response` under `key`, in the transaction that creates the order.

    The unique constraint (user, key) is the judge: if a concurrent request recorded the key first,
    this raises IdempotencyKeyInProgress and the caller's transaction, order included, rolls back.
    """
    values = {
        "id": new_object_id(),
        "user_id": user_id,
        "key": key,
        "fingerprint": fingerprint,
        "order_id": order_id,
        "response": response.decode(),
        "created_at": timezone.now(),
    }
    if connection.vendor in SQL_VENDORS:
        if not _record_sql(values):
            raise IdempotencyKeyInProgress()
        return
    try:
        IdempotencyKey.objects.create(**values)
    except IntegrityError:
        raise IdempotencyKeyInProgress() from None
    except DatabaseError as exc:
        # MongoDB: a concurrent transaction that wrote the same key is a WriteConflict, which
        # django-mongodb-backend raises as a DatabaseError caused by PyMongo's OperationFailure.
        has_error_label = getattr(exc.__cause__, "has_error_label", None)
        if has_error_label is not None and has_error_label("TransientTransactionError"):
            raise IdempotencyKeyInProgress() from exc
        raise


# --- Below the ORM ---------------------------------------------------------------------------------

# A transaction-scoped advisory lock on (this table's namespace, a hash of user and key): a second
# request with the key learns at once that the first is still running, instead of queueing on the
# unique index until the first commits. The lock is released after the commit is visible, so whoever
# takes it next reads the record. Two keys whose hashes collide only ever cost a 409 and a retry.
_ADVISORY_NAMESPACE = 0x1DE4
_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(%s, %s)"
_SELECT_RECORD = (
    'SELECT id, fingerprint, response, created_at < %s FROM orders_idempotencykey WHERE user_id = %s AND "key" = %s'
)
_INSERT_RECORD = (
    'INSERT INTO orders_idempotencykey (id, user_id, "key", fingerprint, order_id, response, created_at)'
    ' VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (user_id, "key") DO NOTHING'
)


def _advisory_lock_id(user_id: str, key: str) -> int:
    """A signed 32-bit number from user and key (the two-key form of PostgreSQL's advisory locks)."""
    digest = hashlib.sha256(f"{user_id}\0{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def _record_sql(values: dict) -> bool:
    adapt = connection.ops.adapt_datetimefield_value
    params = [
        values["id"],
        values["user_id"],
        values["key"],
        values["fingerprint"],
        values["order_id"],
        values["response"],
        adapt(values["created_at"]),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_RECORD, params)
        return cursor.rowcount == 1


# --- The purge -------------------------------------------------------------------------------------


def idempotency_keys_purge(*, batch: int = PURGE_BATCH) -> int:
    """Delete the keys older than IDEMPOTENCY_KEY_TTL_SECONDS, `batch` at a time; returns how many.

    Expired keys are already ignored by idempotency_key_claim; this only keeps the table small.
    Each batch is its own short transaction, so a large backlog never holds SQLite's write lock long.
    """
    cutoff = timezone.now() - dt.timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)
    expired = IdempotencyKey.objects.filter(created_at__lt=cutoff)
    total = 0
    while True:
        with atomic():
            ids = list(expired.values_list("id", flat=True)[:batch])
            if ids:
                total += IdempotencyKey.objects.filter(id__in=ids).delete()[0]
        if len(ids) < batch:
            break
    if total:
        logger.info("purged %d expired idempotency keys", total)
    return total
