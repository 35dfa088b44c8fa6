"""Fixtures of the event plumbing's own tests."""

from __future__ import annotations

import pytest

from testsupport.testrun import PullConsumer


@pytest.fixture
def consumer(jetstream):
    """Make a subject's durable pull consumer, as the worker does, on the stream the worker sets up."""
    jetstream.ensure_streams()
    return lambda subject: PullConsumer(jetstream, subject)
