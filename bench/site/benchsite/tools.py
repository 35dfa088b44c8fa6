"""What runs inside the code under test: `python -m benchsite.tools COMMAND JSON-ARGUMENTS`, one JSON line out.

Only the service's stable interfaces: the models' tables, `orders.services.order_create`, the NATS subjects and
`messaging.events.parse_event`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import django

from benchsite import object_id


def raw_insert(model: Any, template: Any, count: int, **ids: tuple[str, int]) -> None:
    """`count` rows like `template` but for the `ids` attributes, object_id(prefix, n % modulo) in row n: COPY on
    PostgreSQL, executemany on SQLite, 100,000 rows a transaction (a million in seconds; the ORM takes minutes)."""
    from django.db import connection, transaction

    fields = model._meta.concrete_fields
    fixed = [f.get_db_prep_save(getattr(template, f.attname), connection) for f in fields]
    slots = [(i, *ids[f.attname]) for i, f in enumerate(fields) if f.attname in ids]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    for start in range(0, count, 100_000):
        rows = [list(fixed) for _ in range(start, min(count, start + 100_000))]
        for n, row in enumerate(rows, start):
            for index, prefix, modulo in slots:
                row[index] = object_id(prefix, n % modulo)
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:  # quoted identifiers from the model; the values are parameters
                marks = ", ".join(["%s"] * len(fields))
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)  # noqa: S608


def seed(tickets: tuple[str, int] = ("", 0), orders: tuple[str, int] = ("", 0), user: str = "") -> dict:
    """Free `tickets` (an id prefix, a count), and `orders` of `user` on tickets of their own, made by order_create
    as the API makes them: the orders' ids."""
    from orders.services import order_create
    from tickets_replica.models import Ticket

    for prefix, count in (tickets, orders):
        raw_insert(Ticket, Ticket(title="bench concert", price=20, version=0), count, id=(prefix, count))
    return {"orders": [order_create(user_id=user, ticket_id=object_id(orders[0], n)).id for n in range(orders[1])]}


def bulk_orders(count: int, users: int = 100_000) -> dict:
    """`count` cancelled orders of `users` other users on as many tickets: a big, busy table."""
    from django.db import connection
    from django.utils import timezone

    from orders.models import Order, OrderStatus

    started, now = time.perf_counter(), timezone.now()
    seed(tickets=("5e", users))
    template = Order(status=OrderStatus.CANCELLED, expires_at=now, created_at=now - dt.timedelta(days=1), version=1)
    raw_insert(Order, template, count, id=("5c", count), user_id=("5d", users), ticket_id=("5e", users))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # what autovacuum would have done by the time such a table serves traffic
    return {"orders": count, "seconds": time.perf_counter() - started}


def latency(nats: str, orders: int, interval: float, burst: int) -> dict:
    """order_create at `interval` (jittered), then `burst` times back to back: when each returned (the wall clock,
    as the stream's timestamps); every other paced order is also published right after its commit, the baseline."""
    import nats as nats_py

    from orders.services import order_create

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()  # synchronous Django code publishes meanwhile
    client = asyncio.run_coroutine_threadsafe(nats_py.connect(servers=[nats], connect_timeout=5), loop).result(30)
    user, commits = object_id("5b", 1), {"warm-up": {}, "paced": {}, "direct": {}, "burst": {}}
    seed(tickets=("5a", 10 + orders + burst))
    free = [object_id("5a", n) for n in range(10 + orders + burst)]

    def create(kind: str, direct: bool = False) -> None:
        order = order_create(user_id=user, ticket_id=free.pop())
        commits[kind][order.id] = time.time()
        if direct:
            payload = {"id": order.id, "version": order.version, "status": order.status, "userId": order.user_id}
            payload |= {"expiresAt": order.expires_at.isoformat(), "ticket": {"id": order.ticket_id, "price": 20}}
            headers = {"Nats-Msg-Id": f"bench-direct-{order.id}"}
            publish = client.jetstream().publish("order:created", json.dumps(payload).encode(), headers=headers)
            asyncio.run_coroutine_threadsafe(publish, loop).result(30)
            commits["direct"][order.id] = commits[kind][order.id]

    for kind, count in (("warm-up", 10), ("paced", orders)):
        next_at = time.perf_counter()
        for step in range(count):
            time.sleep(max(0.0, next_at - time.perf_counter()))
            create(kind, direct=kind == "paced" and step % 2 == 1)
            # Jittered x0.5-1.5 around the interval: the same rate, no lock step with a poll period.
            next_at += interval * (0.5 + (step * 0.618034) % 1.0)
    started = time.time()
    for _ in range(burst):
        create("burst")
    asyncio.run_coroutine_threadsafe(client.close(), loop).result(30)
    return commits | {"burst_started": started, "burst_create_s": time.time() - started}


def decode(baseline: str, events: int, count: int) -> dict:
    """Events/s and µs of CPU an event of this code's parse_event and the checkout `baseline`'s, medians of `count`
    rounds in turns, and the rounds' ratios."""
    from messaging import events as ours

    theirs = importlib.util.module_from_spec(importlib.util.spec_from_loader("baseline_events", loader=None))
    sys.modules[theirs.__name__] = theirs  # dataclasses look their module up while building the classes
    sys.path.append(baseline)  # what it imports from modules this code no longer has
    source = Path(baseline, "messaging", "events.py")
    exec(compile(source.read_text(), source, "exec"), theirs.__dict__)  # noqa: S102 (our own history)

    def event(n: int) -> tuple[str, dict]:
        ticket = {"id": f"{n:024x}", "version": n % 9, "title": f"concert {n}", "price": 20 + n % 7 / 2, "userId": "u1"}
        if n % 10 < 5:
            return "ticket:created", ticket
        if n % 10 < 8:
            return "ticket:updated", {**ticket, "orderId": f"{n + 1:024x}"} if n % 2 else ticket
        if n % 10 == 8:
            return "payment:created", {"id": f"{n:024x}", "orderId": f"{n + 1:024x}", "stripeId": "ch_1"}
        return "expiration:complete", {"orderId": f"{n:024x}"}

    batch = [(subject, json.dumps(payload).encode()) for subject, payload in map(event, range(events))]
    for subject, data in batch[:50]:  # both accept the same payloads and read them alike
        assert theirs.parse_event(subject, data).to_payload() == ours.parse_event(subject, data).to_payload()
    rounds: dict[str, list] = {"baseline": [], "ours": []}
    for _ in range(count):
        for name, module in (("baseline", theirs), ("ours", ours)):
            cpu, wall = time.process_time(), time.perf_counter()
            for subject, data in batch:
                module.parse_event(subject, data)
            rounds[name].append({"rate": len(batch) / (time.perf_counter() - wall), "cpu": time.process_time() - cpu})
    pairs = list(zip(rounds["ours"], rounds["baseline"], strict=True))
    medians = {name: {k: statistics.median(r[k] for r in rounds[name]) for k in ("rate", "cpu")} for name in rounds}
    for median in medians.values():
        median["cpu"] *= 1e6 / len(batch)  # µs an event
    return medians | {
        "rate_ratio": statistics.median(o["rate"] / b["rate"] for o, b in pairs),
        "cpu_ratios": [o["cpu"] / b["cpu"] for o, b in pairs],
    }


def requests(order_id: str, tickets: str, cookie: str, count: int, warm: int) -> dict:
    """GET /api/orders/:id, the list and POST through the WSGI application in this process, each `warm` times and
    then `count` times between `callgrind_control -z` and `-d` (the process runs under callgrind): one dump a route."""
    import io
    import subprocess

    from ticketing_orders.wsgi import application

    def call(method: str, path: str, body: bytes = b"") -> None:
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "HTTP_COOKIE": cookie,
            "HTTP_HOST": "localhost",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "3000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        status: list[str] = []
        answer = application(environ, lambda line, headers, *exc_info: status.append(line))
        b"".join(answer)
        answer.close()
        assert status[0][:3] in ("200", "201"), (method, path, status)

    posts = iter(range(2 * (warm + count)))
    routes = {
        "GET /api/orders/:id": lambda: call("GET", f"/api/orders/{order_id}"),
        "GET /api/orders": lambda: call("GET", "/api/orders"),
        "POST /api/orders": lambda: call(
            "POST", "/api/orders", b'{"ticketId":"%s"}' % object_id(tickets, next(posts)).encode()
        ),
    }
    for request in routes.values():
        for _ in range(warm):
            request()
        subprocess.run(["callgrind_control", "-z", str(os.getpid())], check=True, capture_output=True)
        for _ in range(count):
            request()
        subprocess.run(["callgrind_control", "-d", str(os.getpid())], check=True, capture_output=True)
    return {"routes": list(routes), "count": count}


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ticketing_orders.settings")
    # Bulk loading (a million rows by COPY, ANALYZE), not requests: the API's server-side timeouts must not apply.
    # Through the environment, so a checkout of before those settings (--code) loads the same way.
    for name in ("DB_STATEMENT_TIMEOUT_MS", "DB_LOCK_TIMEOUT_MS", "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS"):
        os.environ.setdefault(name, "0")
    django.setup()
    command = {"seed": seed, "bulk_orders": bulk_orders, "latency": latency, "decode": decode, "requests": requests}
    command = command[sys.argv[1]]
    sys.stdout.write(json.dumps(command(**json.loads(sys.argv[2]))) + "\n")
