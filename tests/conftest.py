"""Shared fixtures. Tests marked `vllm` share one real vLLM server for the whole session.

Set INSTRUCTFORGE_TEST_ENDPOINT (with INSTRUCTFORGE_TEST_KEY and INSTRUCTFORGE_TEST_MODEL) to
use a server that is already running instead of starting one; `-m "not vllm"` skips them all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import datasets.config
import huggingface_hub.constants
import pytest
from fake_openai import FakeOpenAI
from fake_run import fake_in_thread
from hub_server import BOB, TOKEN, HubServer

from generator.config import parse_config
from generator.llm.server import ServerInfo, managed_server


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    url = os.environ.get("INSTRUCTFORGE_TEST_ENDPOINT")
    if url:
        yield ServerInfo(
            base_urls=[url.rstrip("/")],
            model=os.environ.get("INSTRUCTFORGE_TEST_MODEL", "SmolLM2-135M-Instruct"),
            api_key=os.environ.get("INSTRUCTFORGE_TEST_KEY"),
        )
        return
    config = parse_config({"server": {"device": "cpu"}})
    log_dir = tmp_path_factory.mktemp("vllm")
    with managed_server(config, log_dir) as info:
        yield info


@pytest.fixture(scope="module")
def fake(request: pytest.FixtureRequest) -> Iterator[FakeOpenAI]:
    """The fake OpenAI server (tests/fake_openai.py) for one test module, made with the module's
    `FAKE_OPTIONS` (FakeOpenAI's keywords), if it has any."""
    with fake_in_thread(**getattr(request.module, "FAKE_OPTIONS", {})) as server:
        yield server


@pytest.fixture
def tests_dir() -> Path:
    return Path(__file__).parent


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    with HubServer({TOKEN: "alice", BOB: "bob"}) as server:
        url = server.url
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", url)
        monkeypatch.setattr(
            huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        # the login cache: empty unless a test writes it
        monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
        monkeypatch.setattr(
            huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens")
        )
        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", url)
        monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}")
        yield server
