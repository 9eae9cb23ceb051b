"""Crash and resume: a run killed (SIGKILL) or stopped (SIGINT, SIGTERM) at several points and
then resumed ends with exactly the ids of an uninterrupted run, each stored once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from resume_driver import make_requests

from generator.run.store import RESULTS

pytestmark = pytest.mark.subprocess

DRIVER = Path(__file__).parent / "resume_driver.py"
N = 1200


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    # A little latency and some 500s, so a run takes a couple of seconds and retries happen.
    fake = FakeOpenAI(delay_s=0.02, rates={"500": 0.05, "429": 0.02})
    fake.start_in_thread()
    yield fake
    fake.stop_thread()


def _start(url: str, run_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), url, str(run_dir), str(N)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ok_lines(run_dir: Path) -> Counter[str]:
    """Successful results per request id, read raw from the file (a torn last line skipped)."""
    counts: Counter[str] = Counter()
    path = run_dir / RESULTS
    if not path.exists():
        return counts
    for line in path.read_bytes().splitlines(keepends=True):
        if line.endswith(b"\n"):
            data = json.loads(line)
            if data["error"] is None:
                counts[data["request_id"]] += 1
    return counts


def _wait_for_lines(proc: subprocess.Popen[str], run_dir: Path, lines: int) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ready")
    path = run_dir / RESULTS
    deadline = time.monotonic() + 30
    while lines and (not path.exists() or path.read_bytes().count(b"\n") < lines):
        assert proc.poll() is None, f"the run ended before {lines} results: {proc.communicate()}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.01)


def _resume_to_end(url: str, run_dir: Path) -> None:
    proc = _start(url, run_dir)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert "done:" in out


def _expected_ids() -> set[str]:
    return {r.id for r in make_requests(N)}


@pytest.mark.parametrize("lines", [0, 150, 900], ids=["before-first-flush", "early", "late"])
def test_sigkill_then_resume_loses_and_duplicates_nothing(server: FakeOpenAI, tmp_path: Path, lines: int) -> None:
    proc = _start(server.url, tmp_path)
    _wait_for_lines(proc, tmp_path, lines)
    proc.kill()
    proc.wait()
    stored_before = set(_ok_lines(tmp_path))
    assert len(stored_before) < N, "killed too late to test anything"

    _resume_to_end(server.url, tmp_path)

    counts = _ok_lines(tmp_path)
    assert set(counts) == _expected_ids()
    assert max(counts.values()) == 1
    assert stored_before <= set(counts)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_signal_stops_flushes_and_resumes(server: FakeOpenAI, tmp_path: Path, sig: signal.Signals) -> None:
    proc = _start(server.url, tmp_path)
    _wait_for_lines(proc, tmp_path, 300)
    sent = time.monotonic()
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5, "stopping took longer than the grace period"
    assert proc.returncode == 130, (out, err)
    assert "rerun the same command to resume" in out
    # Every result the run received was flushed before it exited.
    saved = int(out.split("interrupted: ")[1].split()[0])
    assert sum(_ok_lines(tmp_path).values()) + _failed_lines(tmp_path) == saved
    assert len(_ok_lines(tmp_path)) < N

    _resume_to_end(server.url, tmp_path)

    counts = _ok_lines(tmp_path)
    assert set(counts) == _expected_ids()
    assert max(counts.values()) == 1


def _failed_lines(run_dir: Path) -> int:
    return sum(1 for line in (run_dir / RESULTS).read_bytes().splitlines() if json.loads(line)["error"] is not None)


def test_resume_of_a_finished_run_sends_nothing(server: FakeOpenAI, tmp_path: Path) -> None:
    _resume_to_end(server.url, tmp_path)
    size = (tmp_path / RESULTS).stat().st_size
    proc = _start(server.url, tmp_path)
    out, _ = proc.communicate(timeout=60)
    assert f"ready: {N} already done" in out
    assert "done: 0 results saved" in out
    assert (tmp_path / RESULTS).stat().st_size == size
