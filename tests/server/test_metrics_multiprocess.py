"""/metrics under gunicorn counts the requests of every worker process, whichever process answers."""

from __future__ import annotations

import concurrent.futures

import requests

from tests.server.test_slow_clients import Server
from web.tests.test_observability import metric

REQUESTS = 60


def test_every_worker_process_is_counted(tmp_path):
    with Server(tmp_path, WEB_CONCURRENCY="3").running() as server:
        before = requests.get(f"{server.base}/metrics", timeout=10).text

        def call(_: int) -> int:
            # A connection of its own each, so the requests spread over the worker processes.
            return requests.get(f"{server.base}/api/orders", headers={"Cookie": server.cookie}, timeout=10).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(call, range(REQUESTS))) == {200}

        labels = {"status": "200", "view": "orders", "method": "GET"}
        name = "django_http_responses_total_by_status_view_method_total"
        # Each scrape may be answered by any of the three processes: every one must see all requests.
        for _ in range(6):
            text = requests.get(f"{server.base}/metrics", timeout=10).text
            assert metric(text, name, **labels) - metric(before, name, **labels) == REQUESTS
        # The worker's metrics are the worker's: the API does not show them (as zeros).
        assert "orders_worker_" not in text
