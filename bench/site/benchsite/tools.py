"""Seeding and driving on the code under test: `python -m benchsite.tools COMMAND ...`, one JSON line out.

Only the service's stable interfaces are used: the models' tables, `orders.services.order_create`,
the outbox model, and the NATS subjects.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import django

BATCH = 100_000


def object_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:0{24 - len(prefix)}x}"


def raw_insert(model: Any, template: Any, count: int, vary: dict[str, Callable[[int], Any]]) -> None:
    """`count` rows like `template`, the `vary` attributes computed per row, in big transactions.

    executemany on SQLite, COPY on PostgreSQL: a million rows in seconds, where the ORM takes minutes.
    Every other column takes the template's value, so a column added to the model later is filled too.
    """
    from django.db import connection, transaction

    fields = model._meta.concrete_fields
    fixed = [f.get_db_prep_save(getattr(template, f.attname), connection) for f in fields]
    slots = [(i, vary[f.attname]) for i, f in enumerate(fields) if f.attname in vary]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)

    def rows(start: int, stop: int) -> Iterable[list[Any]]:
        for n in range(start, stop):
            row = list(fixed)
            for index, make in slots:
                row[index] = make(n)
            yield row

    for start in range(0, count, BATCH):
        stop = min(count, start + BATCH)
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with (
                    connection.connection.cursor() as cursor,
                    cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
                ):
                    for row in rows(start, stop):
                        copy.write_row(row)
            else:
                marks = ", ".join(["%s"] * len(fields))
                with connection.cursor() as cursor:
                    # Quoted identifiers from the model; the values are parameters.
                    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608
                    cursor.executemany(sql, list(rows(start, stop)))


def make_tickets(prefix: str, count: int) -> list[str]:
    from tickets_replica.models import Ticket

    ids = [object_id(prefix, n) for n in range(count)]
    raw_insert(Ticket, Ticket(id=ids[0], title="bench concert", price=20, version=0), count, {"id": ids.__getitem__})
    return ids


def cmd_tickets(args: argparse.Namespace) -> dict:
    make_tickets(args.prefix, args.count)
    return {"tickets": args.count}


def cmd_orders(args: argparse.Namespace) -> dict:
    """`count` orders of one user through order_create, as the API makes them."""
    from orders.services import order_create

    tickets = make_tickets(args.prefix, args.count)
    return {"orders": [order_create(user_id=args.user, ticket_id=t).id for t in tickets]}


def cmd_bulk_orders(args: argparse.Namespace) -> dict:
    """`count` cancelled orders of `users` other users on `tickets` tickets (a big, busy table)."""
    from django.db import connection
    from django.utils import timezone

    from orders.models import Order, OrderStatus

    started = time.perf_counter()
    tickets = make_tickets("5e", args.tickets)
    users = [object_id("5d", n) for n in range(args.users)]
    now = timezone.now()
    template = Order(
        id=object_id("5c", 0),
        user_id=users[0],
        ticket_id=tickets[0],
        status=OrderStatus.CANCELLED,
        expires_at=now,
        created_at=now - dt.timedelta(days=1),
        version=1,
    )
    raw_insert(
        Order,
        template,
        args.count,
        {
            "id": lambda n: object_id("5c", n),
            "user_id": lambda n: users[n % len(users)],
            "ticket_id": lambda n: tickets[n % len(tickets)],
        },
    )
    with connection.cursor() as cursor:
        # What autovacuum would have done by the time such a table serves traffic.
        cursor.execute("ANALYZE")
    return {"orders": args.count, "seconds": time.perf_counter() - started}


def cmd_outbox(args: argparse.Namespace) -> dict:
    """Outbox rows for the payloads in a JSON file, as order_create would have left them unsent."""
    from django.db import transaction

    from messaging.models import OutboxEvent

    payloads = json.loads(open(args.payloads).read())  # noqa: SIM115
    with transaction.atomic():
        OutboxEvent.objects.bulk_create(
            [OutboxEvent(subject=args.subject, payload=p) for p in payloads], batch_size=2000
        )
    return {"rows": len(payloads)}


class Loop:
    """An asyncio loop on a thread, so synchronous Django code can publish and receive meanwhile."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    cuts = ordered * 99 if len(ordered) == 1 else statistics.quantiles(ordered, n=100, method="inclusive")
    return {"n": len(ordered), "p50": cuts[49], "p99": cuts[98], "max": ordered[-1]}


def cmd_latency(args: argparse.Namespace) -> dict:
    """Commit-to-stream latency of order:created: paced orders, then a burst.

    Every order's latency is the arrival of its relayed order:created on an ordered consumer minus the
    return of order_create (after the commit). Every other paced order is also published by hand right
    after its commit (`bench-direct-` message ids): the baseline, the trip through NATS alone.
    """
    import nats
    from nats.js.errors import NotFoundError

    from orders.services import order_create

    loop = Loop()
    arrived: dict[tuple[str, str], float] = {}

    async def connect() -> Any:
        client = await nats.connect(servers=[args.nats], connect_timeout=5)
        return client, client.jetstream()

    client, js = loop.call(connect())
    deadline = time.monotonic() + 60
    while True:  # the worker creates the stream when it starts
        try:
            loop.call(js.find_stream_name_by_subject("order:created"))
            break
        except NotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

    async def on_message(msg: Any) -> None:
        at = time.perf_counter()
        kind = "direct" if (msg.headers or {}).get("Nats-Msg-Id", "").startswith("bench-direct-") else "outbox"
        arrived.setdefault((kind, json.loads(msg.data)["id"]), at)

    loop.call(js.subscribe("order:created", cb=on_message, ordered_consumer=True))
    warmup = 10
    tickets = make_tickets("5a", warmup + args.orders + args.burst)
    user = object_id("5b", 1)

    def create() -> tuple[Any, float]:
        order = order_create(user_id=user, ticket_id=tickets.pop())
        return order, time.perf_counter()

    def wait(keys: list[tuple[str, str]], timeout: float) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end and any(k not in arrived for k in keys):
            time.sleep(0.01)
        return sum(k not in arrived for k in keys)

    def paced(count: int) -> dict[tuple[str, str], float]:
        commits: dict[tuple[str, str], float] = {}
        next_at = time.perf_counter()
        for step in range(count):
            time.sleep(max(0.0, next_at - time.perf_counter()))
            order, committed = create()
            commits["outbox", order.id] = committed
            if step % 2:
                payload = {
                    "id": order.id,
                    "version": order.version,
                    "status": order.status,
                    "userId": order.user_id,
                    "expiresAt": order.expires_at.astimezone(dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
                    "ticket": {"id": order.ticket_id, "price": 20},
                }
                headers = {"Nats-Msg-Id": f"bench-direct-{order.id}"}
                loop.call(js.publish("order:created", json.dumps(payload).encode(), headers=headers))
                commits["direct", order.id] = committed
            # Jittered x0.5-1.5 around the interval: the same rate, no lock step with a poll period.
            next_at += args.interval * (0.5 + (step * 0.618034) % 1.0)
        return commits

    paced(warmup)
    commits = paced(args.orders)
    missing = wait(list(commits), 30)
    result: dict[str, Any] = {"paced_missing": missing}
    for kind in ("outbox", "direct"):
        values = [(arrived[k] - at) * 1000 for k, at in commits.items() if k[0] == kind and k in arrived]
        result[kind] = summary(values)
    burst: dict[tuple[str, str], float] = {}
    started = time.perf_counter()
    for _ in range(args.burst):
        order, committed = create()
        burst["outbox", order.id] = committed
    created = time.perf_counter()
    result["burst_missing"] = wait(list(burst), 120)
    result["burst"] = summary([(arrived[k] - at) * 1000 for k, at in burst.items() if k in arrived])
    result["burst_create_s"] = created - started
    if burst:
        result["burst_drain_s"] = max(arrived.get(k, float("nan")) for k in burst) - started
    loop.call(client.close())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("tickets")
    p.add_argument("prefix")
    p.add_argument("count", type=int)
    p = commands.add_parser("orders")
    p.add_argument("user")
    p.add_argument("prefix")
    p.add_argument("count", type=int)
    p = commands.add_parser("bulk-orders")
    p.add_argument("count", type=int)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--tickets", type=int, default=100_000)
    p = commands.add_parser("outbox")
    p.add_argument("subject")
    p.add_argument("payloads")
    p = commands.add_parser("latency")
    p.add_argument("--nats", required=True)
    p.add_argument("--orders", type=int, required=True)
    p.add_argument("--interval", type=float, required=True)
    p.add_argument("--burst", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ticketing_orders.settings")
    # Bulk loading (a million rows by COPY, ANALYZE), not requests: the API's server-side timeouts must not
    # apply. Through the environment, so a checkout of before those settings (--code) loads the same way.
    for name in ("DB_STATEMENT_TIMEOUT_MS", "DB_LOCK_TIMEOUT_MS", "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS"):
        os.environ.setdefault(name, "0")
    django.setup()
    handler = {
        "tickets": cmd_tickets,
        "orders": cmd_orders,
        "bulk-orders": cmd_bulk_orders,
        "outbox": cmd_outbox,
        "latency": cmd_latency,
    }[args.command]
    sys.stdout.write(json.dumps(handler(args)) + "\n")


if __name__ == "__main__":
    main()
