"""What the tests that run `generate` against the real vLLM server share: `configs/default.yaml` pointed at
the session's server (tests/conftest.py: `vllm_server`, and `default_run`, the session's one real run of it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from generator.config import Config, load_config
from generator.llm.server import ServerInfo

# The session's run is the shipped config at a smaller size: 20 rows (75 requests, 18,754 answer
# tokens in one session) were two thirds of everything the suite asked of the shared server, and the
# other real tests' requests waited in its batches; no test needs more than a few rows.
TEST_SIZE = {"num_records": 8, "num_instructions": 12}


def default_config(server: ServerInfo, mp: pytest.MonkeyPatch, run_dir: Path, **generation: Any) -> Config:
    """`configs/default.yaml` against `server`, into `run_dir`, at `TEST_SIZE`, with `generation`
    settings over its own."""
    mp.setenv("INSTRUCTFORGE_TEST_KEY_FOR_RUN", server.api_key or "")
    overrides = {
        "server.endpoints": [server.base_url],
        "server.api_key_env": "INSTRUCTFORGE_TEST_KEY_FOR_RUN",
        **{f"generation.{k}": v for k, v in {**TEST_SIZE, **generation}.items()},
    }
    config = load_config("default.yaml", overrides=overrides)
    config.run_dir = run_dir
    return config
