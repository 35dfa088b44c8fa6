"""The harness still runs end to end: the relay scenario in --quick mode on SQLite, its figure on the page."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.nats
@pytest.mark.timeout(120)
def test_quick_relay_run_produces_figures(tmp_path):
    out, figures_json = tmp_path / "bench.md", tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench", "--quick", "--db", "sqlite", "--only", "relay", "--out", str(out)]
    run = subprocess.run(
        [*command, "--json", str(figures_json)], cwd=Path(__file__).parents[2], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # No assertion on the timings themselves: only that real figures were measured and reported.
    ((figure),) = json.loads(figures_json.read_text())
    assert (figure["database"], figure["scenario"], figure["numbers"]["n"]) == ("SQLite", "Relay: 500 outbox rows", 500)
    assert figure["numbers"]["rate"] > 0 and figure["numbers"]["baseline_rate"] > 0 and figure["met"] in (True, False)
    assert math.isclose(figure["ratio"], figure["numbers"]["rate"] / figure["numbers"]["baseline_rate"])
    assert f"| Relay: 500 outbox rows | {figure['numbers']['rate']:.0f} msg/s" in out.read_text()
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")
