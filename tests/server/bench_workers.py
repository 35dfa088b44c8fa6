"""gunicorn worker models side by side: CPU ms per request and req/s under wrk, beside a bare view, in one run.

    .venv/bin/python -m tests.server.bench_workers [--database-url URL] [--rounds 3] [--seconds 8]

Every model gets its own gunicorn (gunicorn.conf.py, WEB_CONCURRENCY=2) on one database; each round
runs every scenario on every model in turn (the order rotating per round), so the figures of one
scenario are taken minutes apart at most (--together: at the same time, each model under its own wrk,
so that all of them meet the same machine). CPU per request is utime+stime of the gunicorn master and
its workers (/proc) over the requests wrk counted: on a shared machine it is steadier than req/s.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt

from messaging.embedded import free_port

REPO = Path(__file__).resolve().parents[2]
MODELS = ("gthread", "common.gunicorn_worker.PrereadThreadWorker", "gevent")
JWT_KEY = "bench-only-jwt-key-not-secret-0123456789abcdef"
SECRET_KEY = "bench-only-django-secret-key-not-secret-0123456789abcdef"
TICKETS_PER_RUN = 5000

SITE_SETTINGS = """\
import os

from ticketing_orders.settings import *  # noqa

ROOT_URLCONF = "bench_urls"
# gevent holds a PostgreSQL connection per greenlet, that is per client connection: a pool bounds them.
if os.environ.get("GUNICORN_WORKER_CLASS") == "gevent" and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {"pool": {"min_size": 4, "max_size": 8}}
"""
SITE_URLS = """\
from django.http import JsonResponse
from django.urls import path

from ticketing_orders.urls import *  # noqa
from ticketing_orders.urls import urlpatterns as project_urlpatterns


def bare(request):
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/bare", bare), *project_urlpatterns]
"""
SEED = """\
import django, json, sys
django.setup()
from orders.services import order_create
from tickets_replica.models import Ticket
user, count = sys.argv[1], int(sys.argv[2])
Ticket.objects.bulk_create([Ticket(id=f"6c{n:022x}", title="t", price=20, version=0) for n in range(count)], batch_size=5000)
Ticket.objects.bulk_create([Ticket(id=f"6d{n:022x}", title="t", price=20, version=0) for n in range(20)])
orders = [order_create(user_id=user, ticket_id=f"6d{n:022x}").id for n in range(20)]
print(json.dumps(orders))
"""
POST_LUA = """\
local counter, ids, pos, step, cookie = 0, {}, 1, 1, ""
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
function init(args)
  for line in io.lines(args[1]) do table.insert(ids, line) end
  step, cookie = tonumber(args[2]), args[3]
  pos = tid + 1
end
function request()
  local id = ids[pos] or "000000000000000000000000"
  pos = pos + step
  return wrk.format("POST", "/api/orders", {["Host"] = "127.0.0.1", ["Cookie"] = cookie,
    ["Content-Type"] = "application/json"}, '{"ticketId": "' .. id .. '"}')
end
"""


def process_tree_cpu(pid: int) -> float:
    """utime+stime in seconds of `pid` and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return total


def session_cookie(user_id: str) -> str:
    """The auth service's cookie: base64 of {"jwt": an HS256 token}."""
    token = jwt.encode({"id": user_id, "email": "bench@test.com", "iat": int(time.time())}, JWT_KEY, "HS256")
    return "session=" + base64.b64encode(json.dumps({"jwt": token}).encode()).decode()


def wrk(url: str, seconds: float, *options: str, script_args: tuple[str, ...] = ()) -> dict[str, float]:
    command = ["wrk", "-t2", "-c32", f"-d{seconds:g}s", "--timeout", "10s", *options, url]
    out = subprocess.run([*command, "--", *script_args], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": requests,
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "non2xx": int(failed.group(1)) if failed else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a SQLite file in a scratch folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--together", action="store_true", help="load every model at once, so all share the machine's state"
    )
    args = parser.parse_args()
    models = args.models.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    (work / "bench_settings.py").write_text(SITE_SETTINGS)
    (work / "bench_urls.py").write_text(SITE_URLS)
    (work / "post.lua").write_text(POST_LUA)
    env = {
        **os.environ,
        "PYTHONPATH": f"{work}{os.pathsep}{REPO}",
        "DJANGO_SETTINGS_MODULE": "bench_settings",
        "JWT_KEY": JWT_KEY,
        "SECRET_KEY": SECRET_KEY,
        "DATA_DIR": str(work),
        "DATABASE_URL": args.database_url or f"sqlite:///{work / 'orders.sqlite3'}",
        "WEB_CONCURRENCY": "2",
        "LOG_LEVEL": "WARNING",
    }
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True)
    list_user, post_user = "6a" + "0" * 21 + "1", "6a" + "0" * 21 + "2"
    seeded = subprocess.run(
        [python, "-c", SEED, list_user, str(TICKETS_PER_RUN * len(models) * (args.rounds + 1))],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    order_id = seeded.stdout.strip().splitlines()[-1].split('"')[1]
    list_cookie, post_cookie = session_cookie(list_user), session_cookie(post_user)
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for model in models:
            port = free_port()
            process = subprocess.Popen(
                [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "ticketing_orders.wsgi"],
                cwd=REPO,
                env={**env, "GUNICORN_WORKER_CLASS": model, "GUNICORN_BIND": f"127.0.0.1:{port}"},
                stdout=subprocess.DEVNULL,
                stderr=open(work / f"{model}.log", "wb"),  # noqa: SIM115 (closed with the process)
            )
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/bench/bare", timeout=2):  # noqa: S310
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((work / f"{model}.log").read_text()[-3000:])
                time.sleep(0.2)
            servers[model] = (process, base)
        next_ticket = 0

        def post_file() -> str:
            nonlocal next_ticket
            path = work / f"post-{next_ticket}.txt"
            path.write_text("".join(f"6c{n:022x}\n" for n in range(next_ticket, next_ticket + TICKETS_PER_RUN)))
            next_ticket += TICKETS_PER_RUN
            return str(path)

        scenarios = {
            "bare": lambda base, seconds: wrk(f"{base}/bench/bare", seconds),
            "GET :id": lambda base, seconds: wrk(
                f"{base}/api/orders/{order_id}", seconds, "-H", f"Cookie: {list_cookie}"
            ),
            "GET list": lambda base, seconds: wrk(f"{base}/api/orders", seconds, "-H", f"Cookie: {list_cookie}"),
            "POST": lambda base, seconds: wrk(
                base, seconds, "-s", str(work / "post.lua"), script_args=(post_file(), "2", post_cookie)
            ),
        }
        for model in models:  # warm every worker on every route (imports, connections)
            for scenario in scenarios.values():
                scenario(servers[model][1], 1)
        print("round\tscenario\tmodel\treq/s\tCPU ms/req\tnon-2xx", flush=True)
        for round_number in range(args.rounds):
            order = models[round_number % len(models) :] + models[: round_number % len(models)]
            for name, scenario in scenarios.items():
                for group in [order] if args.together else [[model] for model in order]:
                    before = {model: process_tree_cpu(servers[model][0].pid) for model in group}
                    with ThreadPoolExecutor(len(group)) as pool:
                        runs = {model: pool.submit(scenario, servers[model][1], args.seconds) for model in group}
                        results = {model: run.result() for model, run in runs.items()}
                    for model, result in results.items():
                        cpu_ms = (process_tree_cpu(servers[model][0].pid) - before[model]) / result["requests"] * 1000
                        print(
                            f"{round_number}\t{name}\t{model}\t{result['rate']:.0f}\t{cpu_ms:.3f}\t{result['non2xx']}",
                            flush=True,
                        )
    finally:
        for process, _ in servers.values():
            process.terminate()
        for process, _ in servers.values():
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
