"""Shared fixtures. Tests marked `vllm` share one real vLLM server for the whole session.

Set INSTRUCTFORGE_TEST_ENDPOINT (with INSTRUCTFORGE_TEST_KEY and INSTRUCTFORGE_TEST_MODEL) to
use a server that is already running instead of starting one; `-m "not vllm"` skips them all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.config import parse_config
from generator.server import ServerInfo, managed_server


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    url = os.environ.get("INSTRUCTFORGE_TEST_ENDPOINT")
    if url:
        yield ServerInfo(base_urls=[url.rstrip("/")],
                         model=os.environ.get("INSTRUCTFORGE_TEST_MODEL", "SmolLM2-135M-Instruct"),
                         api_key=os.environ.get("INSTRUCTFORGE_TEST_KEY"))
        return
    config = parse_config({"server": {"device": "cpu"}})
    log_dir = tmp_path_factory.mktemp("vllm")
    with managed_server(config, log_dir) as info:
        yield info


@pytest.fixture
def tests_dir() -> Path:
    return Path(__file__).parent
