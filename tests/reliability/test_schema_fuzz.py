"""schemathesis against the live API (granian, as shipped): every answer is in the OpenAPI document, none is a 5xx."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys

import pytest

from core.ids import new_object_id
from testsupport.service import start_api
from testsupport.testrun import database_under_test_url
from web.management.commands.mint_token import session_token

from .support import fault_env, record

pytestmark = [pytest.mark.reliability]

# 0 5xx and 0 answers outside the document. The stateful checks that assume DELETE removes a resource
# (use_after_free, ensure_resource_availability) do not apply: DELETE cancels, the order stays readable.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
TICKETS = 60


@pytest.fixture
def live_api(transactional_db, processes, make_ticket):
    """The API as shipped (granian) on the test database, with tickets in the replica."""
    tickets = [make_ticket(price=n + 0.5).id for n in range(TICKETS)]
    env = fault_env(database_url=database_under_test_url(), data_dir=processes.workdir)
    return start_api(processes, "api", env).url, tickets


def schemathesis(processes, api: str, tickets: list[str], *, name: str, headers: list[str], examples: int, phases: str):
    """Run the schemathesis CLI; returns (exit code, output, test cases generated, seed)."""
    config = processes.workdir / f"{name}.toml"
    # Half the generated bodies carry a ticket that exists, so creates succeed and the stateful phase
    # can follow the links it infers (POST -> GET/DELETE /api/orders/{order_id}).
    config.write_text(
        f"[dictionaries.tickets]\nvalues = {json.dumps(tickets)}\n\n"
        '[parameters]\n"body.ticketId" = { dictionary = "tickets", probability = 0.5 }\n'
    )
    seed = int(os.environ.get("RELIABILITY_SEED") or random.randrange(2**31))
    args = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run"]
    args += [f"{api}/api/orders/schema/", "--url", api, "--checks", ",".join(CHECKS), "--phases", phases]
    args += ["--max-examples", str(examples), "--seed", str(seed), "--workers", "1", "--request-timeout", "30"]
    args += ["--suppress-health-check", "too_slow"]
    for header in headers:
        args += ["-H", header]
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=processes.workdir,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"},
    )
    output = result.stdout + result.stderr
    (processes.workdir / f"{name}.out").write_text(output)
    generated = re.search(r"(\d+) generated", output)
    return result.returncode, output, int(generated[1]) if generated else 0, seed


def test_every_answer_is_in_the_schema_and_none_is_a_5xx(processes, live_api, scale):
    api, tickets = live_api
    user = new_object_id()
    token = session_token(user_id=user, email=f"{user}@test.com")
    signed_in = schemathesis(
        processes,
        api,
        tickets,
        name="signed-in",
        headers=[f"Authorization: Bearer {token}"],
        examples=scale.fuzz_examples,
        phases="examples,coverage,fuzzing,stateful",
    )
    # Signed out every operation answers 401 before reading anything: fewer examples find as much.
    signed_out = schemathesis(
        processes,
        api,
        tickets,
        name="signed-out",
        headers=[],
        examples=max(10, scale.fuzz_examples // 5),
        phases="examples,coverage,fuzzing",
    )
    links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", signed_in[1])
    record(
        "schemathesis",
        max_examples=scale.fuzz_examples,
        signed_in_exit_code=signed_in[0],
        signed_in_test_cases=signed_in[2],
        signed_in_seed=signed_in[3],
        links_covered=f"{links[1]}/{links[2]}" if links else None,
        signed_out_exit_code=signed_out[0],
        signed_out_test_cases=signed_out[2],
        signed_out_seed=signed_out[3],
    )
    assert signed_in[0] == 0, signed_in[1][-12000:]
    assert signed_out[0] == 0, signed_out[1][-12000:]
    assert signed_in[2] > 0 and signed_out[2] > 0
    assert links and int(links[1]) > 0, "the stateful phase followed no link: creates never succeeded"
