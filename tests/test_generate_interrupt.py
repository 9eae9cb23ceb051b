"""`instructforge generate` stopped by Ctrl-C, SIGTERM or SIGKILL at several points, then rerun:
the dataset equals that of an uninterrupted run, and no request is stored twice.

The server is the fake OpenAI-compatible one (it answers deterministically and slowly enough to
be interrupted mid-run); the real server's part of the flow is covered in test_generate.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fake_openai import FakeOpenAI
from fake_run import NO_REPORT_YAML, fake_process

pytestmark = pytest.mark.subprocess

EXE = str(Path(sys.executable).parent / "instructforge")


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    with fake_process("--delay", "0.3", "--variants") as url:
        yield url


def _config(tmp_path: Path, url: str, name: str) -> Path:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(
        f"run_dir: {tmp_path / name}\n"
        "model: {name: fake, served_name: fake-model}\n"
        f"server: {{endpoints: [{url}]}}\n"
        "engine: {concurrency: 4, stop_grace_s: 0.5}\n"
        "generation: {num_instructions: 24, instances: response}\n"
        # The fake server echoes prompts: keep the chains to what such text passes.
        "filters: {instructions: [{name: length}, {name: exact_dedup}], records: [{name: truncated}]}\n"
        + NO_REPORT_YAML
    )
    return cfg


def _run(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "generate", "-c", str(cfg)], capture_output=True, text=True, timeout=300)


def _ids(run_dir: Path) -> list[str]:
    ids: list[str] = []
    for shard in sorted((run_dir / "dataset" / "data").glob("*.parquet")):
        ids += pq.read_table(shard, columns=["id"]).column("id").to_pylist()
    return sorted(ids)


def _stored(run_dir: Path) -> list[str]:
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    return [json.loads(line)["request_id"] for line in lines if line.endswith("}")]


FAKE_OPTIONS = {"variants": True}  # the fast server (tests/conftest.py: `fake`): the same answers, at once


@pytest.fixture(scope="module")
def reference(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    tmp = tmp_path_factory.mktemp("reference")
    done = _run(_config(tmp, fake.url, "ref"))
    assert done.returncode == 0, done.stderr
    ids = _ids(tmp / "ref")
    assert len(ids) == 24
    return ids


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "sigkill"])
@pytest.mark.parametrize("after", [3, 18], ids=["early", "late"])
def test_interrupted_run_resumes_to_the_same_dataset(
    tmp_path: Path, fake_url: str, fake: FakeOpenAI, reference: list[str], sig: signal.Signals, after: int
) -> None:
    """Interrupted while the slow server answers; resumed against the fast one (the same answers:
    server settings are not in the fingerprint)."""
    cfg = _config(tmp_path, fake_url, "run")
    results = tmp_path / "run" / "results.jsonl"
    proc = subprocess.Popen(
        [EXE, "generate", "-c", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and results.read_text().count("\n") >= after:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig is signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, err
        assert "Run the same command again to resume" in err
        assert "Traceback" not in err
    stored_before = len(set(_stored(tmp_path / "run")))
    assert stored_before >= after

    again = _run(_config(tmp_path, fake.url, "run"))
    assert again.returncode == 0, again.stderr
    assert _ids(tmp_path / "run") == reference
    stored = _stored(tmp_path / "run")
    assert len(stored) == len(set(stored)), "a request was stored twice"
