"""Fixtures of the event plumbing's own tests: the worker as a real `run_listeners` process."""

from __future__ import annotations

import pytest

from testsupport.testrun import WorkerProcess


@pytest.fixture
def worker_process(transactional_db, nats_server, tmp_path):
    """Start `python manage.py run_listeners` on the test database; each run logs to a file of its own."""
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        log_path = tmp_path / f"run_listeners-{len(started) + 1}.log"
        process = WorkerProcess(log_path, nats_url=nats_server.url, **env).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
