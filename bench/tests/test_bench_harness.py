"""The benchmark harness still runs: one cheap scenario in --quick mode on SQLite, figures well formed."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.nats
@pytest.mark.timeout(120)
def test_quick_relay_run_produces_figures(tmp_path):
    out, figures_json = tmp_path / "bench.md", tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench", "--quick", "--db", "sqlite", "--only", "relay"]
    run = subprocess.run(
        [*command, "--out", str(out), "--json", str(figures_json)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    # No assertion on the timings themselves: only that real figures were measured and reported.
    (figure,) = json.loads(figures_json.read_text())
    assert figure["database"] == "SQLite"
    assert figure["scenario"] == "Relay: 500 outbox rows"
    numbers = figure["numbers"]
    assert numbers["n"] == 500
    assert numbers["rate"] > 0 and numbers["baseline_rate"] > 0
    assert math.isclose(figure["ratio"], numbers["rate"] / numbers["baseline_rate"])
    assert figure["met"] in (True, False)

    page = out.read_text()
    assert re.search(r"^\| Relay: 500 outbox rows +\| ", page, re.MULTILINE)
    assert f"{numbers['rate']:.0f} msg/s" in page
    assert "![" in page and (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")
