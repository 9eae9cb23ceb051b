"""What the tests that run `generate` against the fake OpenAI server (tests/fake_openai.py) share:
the settings that point a run at it, and the server itself, in a thread of this process or in a
process of its own (which outlives a run killed with SIGKILL). The module-scoped `fake` fixture
(tests/conftest.py) serves one per test module."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fake_openai import FakeOpenAI

SCRIPT = Path(__file__).parent / "fake_openai.py"
# Chains that the fake server's echoed text passes.
ECHO_CHAINS = {"instructions": [{"name": "length"}, {"name": "exact_dedup"}], "records": [{"name": "truncated"}]}
# The same with a record filter that drops a share of the finished rows (so that a record target
# takes more than one refill).
SHARE_DROPPED = {**ECHO_CHAINS, "records": [{"name": "truncated"}, {"name": "length", "min_words": 12}]}
# The report is off in the fake runs of tests that are not about it: it encodes the rows with MiniLM,
# which in a `generate` subprocess means importing torch and loading the model (seconds each time).
NO_REPORT = {"report": {"enabled": False}}
NO_REPORT_YAML = "report: {enabled: false}\n"


def fake_settings(run_dir: Path, url: str, *bases: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A run into `run_dir` of the fake model served at `url`, without the HTML report (see
    `NO_REPORT`): then each of `bases` and `sections` in turn, a section's keys over the same
    section's before it (`generation={"turns": 3}` keeps the other generation settings); a value
    that is not a dict replaces what was there. A test about the report passes
    `report={"enabled": True}`."""
    data: dict[str, Any] = {
        "run_dir": str(run_dir),
        "model": {"name": "fake", "served_name": "fake-model"},
        "server": {"endpoints": [url]},
        **NO_REPORT,
    }
    for layer in (*bases, sections):
        for name, value in layer.items():
            old = data.get(name)
            data[name] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
    return data


@contextmanager
def fake_in_thread(**options: Any) -> Iterator[FakeOpenAI]:
    """A `FakeOpenAI(**options)` serving in a thread of this process while the block runs."""
    server = FakeOpenAI(**options)
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


@contextmanager
def fake_process(*args: str) -> Iterator[str]:
    """tests/fake_openai.py run with `args` (`--delay 0.3 --variants`) in a process of its own, for
    runs that are killed mid-way; its URL."""
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
