"""/metrics under the default server counts the requests of every worker process, a replaced one's included."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from pathlib import Path

import requests

from tests.server.support import Server
from testsupport.http import metric, scrape
from testsupport.processes import process_tree

REQUESTS = 60
NAME = "django_http_responses_total_by_status_view_method_total"
LABELS = {"status": "200", "view": "orders", "method": "GET"}


def worker_pids(server: Server) -> set[int]:
    tree, stats = process_tree(server.process.pid)
    return {pid for pid in tree if int(stats[pid][1]) == server.process.pid and "worker" in _cmdline(pid)}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def call_many(server: Server) -> None:
    def call(_: int) -> int:
        # A connection of its own each, so the requests spread over the worker processes.
        return requests.get(f"{server.base}/api/orders", headers={"Cookie": server.cookie}, timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(call, range(REQUESTS))) == {200}


def counted(server: Server) -> float:
    return metric(scrape(server.port), NAME, **LABELS)


def test_every_worker_process_is_counted_and_a_dead_ones_requests_stay(tmp_path):
    with Server(tmp_path, WEB_CONCURRENCY="3").running() as server:
        before = counted(server)
        call_many(server)
        # Each scrape may be answered by any of the three processes: every one must see all requests.
        for _ in range(6):
            assert counted(server) - before == REQUESTS
        text = scrape(server.port)
        # The worker's metrics are the worker's: the API does not show them (as zeros).
        assert "orders_worker_" not in text

        workers = worker_pids(server)
        assert len(workers) == 3, workers
        os.kill(min(workers), signal.SIGKILL)  # granian respawns it (ticketing_orders/server.py)
        deadline = time.monotonic() + 60
        while len(worker_pids(server) - workers) < 1 or len(worker_pids(server)) < 3:
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.2)
        call_many(server)
        for _ in range(6):
            assert counted(server) - before == 2 * REQUESTS
