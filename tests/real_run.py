"""What the tests that run `generate` against the real vLLM server share: `configs/default.yaml` pointed at
the session's server (tests/conftest.py: `vllm_server`, and `default_run`, the session's one real run of it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from generator.config import Config, load_config
from generator.llm.server import ServerInfo


def default_config(server: ServerInfo, mp: pytest.MonkeyPatch, run_dir: Path, **generation: Any) -> Config:
    """`configs/default.yaml` against `server`, into `run_dir`, with `generation` settings over its own."""
    mp.setenv("INSTRUCTFORGE_TEST_KEY_FOR_RUN", server.api_key or "")
    overrides = {
        "server.endpoints": [server.base_url],
        "server.api_key_env": "INSTRUCTFORGE_TEST_KEY_FOR_RUN",
        **{f"generation.{k}": v for k, v in generation.items()},
    }
    config = load_config("default.yaml", overrides=overrides)
    config.run_dir = run_dir
    return config
