"""Every event the service published to a test's nats-server, checked against docs/asyncapi.json."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
from jsonschema import Draft7Validator, FormatChecker
from nats.js.errors import NotFoundError

from messaging.asyncapi import PUBLISHERS, SERVICE
from messaging.jetstream import nats_servers

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
# The service's own subjects: other services' events in the tests are made up by the tests.
PUBLISHED = [subject.value for subject, publisher in PUBLISHERS.items() if publisher == SERVICE]
# Every wait on the server is bounded: a test's server is local, so seconds are plenty.
TIMEOUT_SECONDS = 5


class Checked:
    """How many published events the session checked, for the summary line."""

    events = 0
    servers = 0


def validators() -> dict[str, tuple[Draft7Validator, Draft7Validator]]:
    """(payload, headers) validators per channel address, resolving the document's own `$ref`s."""
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    found = {}
    for channel in document["channels"].values():
        [ref] = [m["$ref"] for m in channel["messages"].values()]
        message = document["components"]["messages"][ref.rsplit("/", 1)[-1]]
        pair = []
        for part in ("payload", "headers"):
            # The document is the root, so `#/components/schemas/...` resolves as in the document itself.
            schema = {**document, "$ref": message[part]["$ref"]}
            pair.append(Draft7Validator(schema, format_checker=FormatChecker()))
        found[channel["address"]] = tuple(pair)
    return found


def problems_of(address: str, data: bytes, headers: dict | None, checks) -> list[str]:
    payload_check, headers_check = checks[address]
    try:
        payload = json.loads(data)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    errors = [f"payload {'/'.join(map(str, e.path))}: {e.message}" for e in payload_check.iter_errors(payload)]
    errors += [f"headers {'/'.join(map(str, e.path))}: {e.message}" for e in headers_check.iter_errors(headers or {})]
    return errors


async def _read_and_check(url: str) -> tuple[int, list[str]]:
    checks = validators()
    client = await nats.connect(
        servers=nats_servers(url), connect_timeout=TIMEOUT_SECONDS, allow_reconnect=False, max_reconnect_attempts=0
    )
    try:
        js = client.jetstream(timeout=TIMEOUT_SECONDS)
        seen, failures = 0, []
        for info in await js.streams_info():
            for subject in PUBLISHED:
                if subject not in (info.config.subjects or []):
                    continue
                seq = 1
                while True:
                    try:
                        msg = await js.get_msg(info.config.name, seq=seq, subject=subject, next=True)
                    except NotFoundError:
                        break
                    seen += 1
                    for problem in problems_of(subject, msg.data or b"", msg.headers, checks):
                        failures.append(f"{info.config.name} seq {msg.seq} {subject}: {problem}")
                    seq = msg.seq + 1
        return seen, failures
    finally:
        await client.close()


def assert_published_events_conform(url: str) -> int:
    """Read every order:created/order:cancelled on the server and fail with each one the document refuses."""
    seen, failures = asyncio.run(asyncio.wait_for(_read_and_check(url), timeout=120))
    Checked.events += seen
    Checked.servers += 1
    assert not failures, "published events the AsyncAPI document refuses:\n" + "\n".join(failures[:20])
    return seen
