"""Shared fixtures, and the test tiers.

Every test is in one tier, a marker set here when the tests are collected:

- `unit`: no process, no server (not even one in a thread); most of the suite.
- `fake_server`: a fake served in this process: the fake OpenAI server (tests/fake_openai.py,
  the module-scoped `fake` fixture or its own), the in-test Hub (`hub`). Marked by the fixtures
  it uses, or by its module's or its own `fake_server` marker.
- `subprocess`: starts processes: `instructforge` runs killed and resumed, scripts, a fake
  server of its own. Marked `subprocess` in its module or on the test.
- `real`: the real components: vLLM (`vllm`, with the `vllm_server` fixture or a managed server of
  its own), TRL, Chromium (`browser_ready`). Marked `real`, `vllm`, or by those fixtures.

A test is in the heaviest tier it qualifies for. A test that starts a process or listens on a
socket without its tier allowing it fails with a message naming the marker it needs, so the
tiers stay honest (`make test-unit` runs the `unit` tier alone, and so on; `make test` runs all).

Tests marked `vllm` share one real vLLM server for the whole session (`vllm_server`) and one real
run of `configs/default.yaml` (`default_run`). Under pytest-xdist (`make test` runs four workers
with `--dist loadgroup`) the first worker that needs the server starts it for all
(tests/shared_server.py), so `vllm` tests run on any worker and their requests share the
server's batches; the tests of `default_run` are one `xdist_group` (the run is made once, and handed
out first: it is the session's longest chain), the tests of a module with a module-scoped fixture
are a group too (the fixture is built once), and the heaviest tiers are handed out first.

Set INSTRUCTFORGE_TEST_ENDPOINT (with INSTRUCTFORGE_TEST_KEY and INSTRUCTFORGE_TEST_MODEL) to
use a server that is already running instead of starting one; `-m "not vllm"` skips them all.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets.config
import huggingface_hub.constants
import pytest
from fake_openai import FakeOpenAI
from fake_run import fake_in_thread
from hub_server import BOB, TOKEN, HubServer
from real_run import default_config

from generator.config import parse_config
from generator.llm.server import ServerInfo, managed_server

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker sizes its thread pools (OpenMP: torch, scikit-learn, faiss; OpenBLAS) to its
    # share of the cores, before any of them loads; its subprocesses inherit it. With every pool as
    # wide as the machine, the workers' threads spin-wait on each other: a t-SNE of 150 points took
    # 25 s instead of 2 on two busy cores. vLLM sets its own threads (VLLM_CPU_OMP_THREADS_BIND).
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))

# OpenMP threads that wait for work sleep instead of spinning, in this process and every one it starts
# (vLLM servers above all): the suite keeps both cores busy, and a vLLM server whose two threads spin
# at each barrier while another process holds a core decoded 0.8 tokens/s for one request instead of
# 15 (passive), and took minutes to start (scripts/bench_server_start.py --busy). On two quiet cores
# passive costs vLLM about 30%, which is why only the tests set it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_RUN = "default_run"  # the xdist group of the tests that share the session's real run
# The xdist group of the `vllm` tests that start vLLM servers of their own: marked `managed_vllm` (they
# may use the shared one too, as the chaos matrix's resumes do), or `vllm` without `vllm_server`.
MANAGED = "managed_vllm"
# Heaviest first: the order in which the tiers are handed to xdist's workers.
TIERS = ("real", "subprocess", "fake_server", "unit")
# Fixtures that put a test in a tier by themselves.
TIER_FIXTURES = {
    "real": {"vllm_server", "default_run", "browser_ready"},
    "fake_server": {"fake", "hub"},
}
# What each tier may do: start a process, listen on a socket.
ALLOWED = {"unit": set(), "fake_server": {"listen"}, "subprocess": {"process", "listen"}, "real": {"process", "listen"}}
_TIER = pytest.StashKey[str]()


def _tier(item: pytest.Item) -> str:
    if item.get_closest_marker("vllm") or item.get_closest_marker("real"):
        return "real"
    fixtures = set(getattr(item, "fixturenames", ()))
    for tier in TIERS[:-1]:
        if item.get_closest_marker(tier) or fixtures & TIER_FIXTURES.get(tier, set()):
            return tier
    return "unit"


def _group(item: pytest.Item) -> str | None:
    """The xdist group: the tests of the session's real run (`default_run`) in one, built once; the
    `vllm` tests that start servers of their own in one (two such servers at once beside the shared
    one would crowd two cores); the tests of a module that share a module-scoped fixture in one per
    module; None for a test that can go anywhere (the workers share one vLLM server: `vllm_server`)."""
    fixtures = set(getattr(item, "fixturenames", ()))
    if "default_run" in fixtures:
        return DEFAULT_RUN
    if item.get_closest_marker(MANAGED) or (item.get_closest_marker("vllm") and "vllm_server" not in fixtures):
        return MANAGED  # a test that starts vLLM servers of its own: one such test at a time
    info = getattr(item, "_fixtureinfo", None)
    if info and any(d.scope in ("module", "package") for defs in info.name2fixturedefs.values() for d in defs):
        return item.nodeid.split("::", 1)[0]
    return None


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Iterator[None]:
    # Before the other hooks (`-m` selects on the tiers; xdist reads the xdist_group markers) ...
    unit_of: dict[int, str] = {}  # id(item) -> its xdist work unit: its group, or itself
    heaviest: dict[str, float] = {}  # unit -> its heaviest tier (an index in TIERS)
    size: dict[str, int] = {}  # unit -> its tests
    for item in items:
        tier = _tier(item)
        item.add_marker(getattr(pytest.mark, tier))
        item.stash[_TIER] = tier
        group = _group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        unit = group or item.nodeid
        # The real run's group first of all: the session's longest chain. The managed servers' group
        # after the other `real` units: a vLLM that starts beside the shared server while that one
        # is busy took 4-5 minutes instead of one (its processes' imports starved on two cores).
        rank = -1 if unit == DEFAULT_RUN else 0.5 if unit == MANAGED else TIERS.index(tier)
        heaviest[unit] = min(heaviest.get(unit, len(TIERS)), rank)
        size[unit] = size.get(unit, 0) + 1
        unit_of[id(item)] = unit
    result = yield
    # ... and after them, in an xdist worker:
    if getattr(config.option, "loadgroup", False):
        _check_groups(items)
    if hasattr(config, "workerinput"):
        # The heaviest work first (`make test` runs with --no-loadscope-reorder, so xdist hands out
        # the units in this order): the long vLLM group starts at once and the quick unit tests fill
        # in at the end; within a tier the largest groups first, since a group runs on one worker
        # (a module's group of 17 tests handed out last kept one worker busy 80 s after the others
        # were done). A stable sort: a unit's tests keep their order.
        items.sort(key=lambda item: (heaviest[unit_of[id(item)]], -size[unit_of[id(item)]]))
    return result


def _check_groups(items: list[pytest.Item]) -> None:
    """xdist tells the controller a test's group by appending `@group` to its node id in the worker;
    on pytest 9.2 its assignment no longer reaches the node id (pytest-xdist issue 1386, fixed in
    PR 1388, unreleased in 3.8.0), and every test would be scheduled alone: two workers would each
    start a vLLM server. Until a release has the fix, set it here; fail if it cannot be set."""
    from _pytest.nodeid import NodeId

    for item in items:
        names = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        )
        if not names:
            continue
        suffix = "@" + "_".join(names)
        if not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(item.nodeid + suffix)  # type: ignore[attr-defined]
        if not item.nodeid.endswith(suffix):
            raise pytest.UsageError(f"cannot put {item.nodeid} in its xdist group {suffix[1:]} (tests/conftest.py)")


ROOT = Path(__file__).resolve().parent.parent
# Processes that libraries start once to probe the machine, whoever first needs them (joblib's
# count of physical cores, for scikit-learn): not the test's doing.
PROBES = {"lscpu"}


class _Watch:
    """What a test did that its tier may not allow: processes started, sockets listened on, each
    with the innermost line of this repository that led to it, and the thread."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.active = False

    def note(self, kind: str, detail: str) -> None:
        if not self.active or kind in self.seen:
            return
        ours = [f for f in traceback.extract_stack() if f.filename.startswith(str(ROOT)) and f.filename != __file__]
        where = f"{Path(ours[-1].filename).relative_to(ROOT)}:{ours[-1].lineno}" if ours else "outside this repository"
        self.seen[kind] = f"{detail} (from {where}, thread {threading.current_thread().name})"


_WATCH = _Watch()
_popen_init = subprocess.Popen.__init__
_listen = socket.socket.listen


def _watched_popen_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
    program = args[0] if isinstance(args, (list, tuple)) and args else args
    if Path(str(program)).name not in PROBES:
        _WATCH.note("process", str(args)[:200])
    _popen_init(self, args, *rest, **kwargs)


def _watched_listen(self: socket.socket, *args: Any) -> None:
    _WATCH.note("listen", repr(self.getsockname()))
    _listen(self, *args)


subprocess.Popen.__init__ = _watched_popen_init  # type: ignore[method-assign]
socket.socket.listen = _watched_listen  # type: ignore[method-assign]

_NEEDS = {"process": "`subprocess` (or `real`)", "listen": "`fake_server` (or a heavier tier)"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    _WATCH.seen.clear()
    _WATCH.active = True
    try:
        return (yield)
    finally:
        _WATCH.active = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    _WATCH.active = True
    try:
        result = yield
    finally:
        _WATCH.active = False
    tier = item.stash.get(_TIER, "unit")
    wrong = {k: v for k, v in _WATCH.seen.items() if k not in ALLOWED[tier]}
    if wrong:
        pytest.fail(
            f"this `{tier}` test "
            + "; ".join(f"{'started a process' if k == 'process' else 'listened on'} {v}" for k, v in wrong.items())
            + ": mark it "
            + " and ".join(_NEEDS[k] for k in wrong)
            + " (tests/conftest.py: the tiers)",
            pytrace=False,
        )
    return result


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
    if os.environ.get("PYTEST_XDIST_WORKER"):
        yield _shared_server(tmp_path_factory.getbasetemp().parent)
        return
    config = parse_config({"server": {"device": "cpu"}})
    log_dir = tmp_path_factory.mktemp("vllm")
    with managed_server(config, log_dir) as info:
        yield info


_SHARED: list[subprocess.Popen[bytes]] = []  # the shared server's keeper, when this worker started it


def _shared_server(shared: Path) -> ServerInfo:
    """The one server of every xdist worker (tests/shared_server.py): the first worker to get here
    starts it; each waits until it is healthy. `shared` is the session's base temporary folder, the
    parent of every worker's own."""
    info = shared / "vllm-server.json"
    with (shared / "vllm-server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "vllm-server.started").exists():
            (shared / "vllm-server.started").touch()
            log_dir = shared / "vllm"
            log_dir.mkdir(exist_ok=True)
            # The pytest process that started this worker: the server lives until it is gone.
            _SHARED.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(ROOT / "tests" / "shared_server.py"),
                        str(info),
                        str(os.getppid()),
                        str(log_dir),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=(log_dir / "shared_server.err").open("ab"),
                    start_new_session=True,
                )
            )
    deadline = time.monotonic() + parse_config({}).server.startup_timeout_s + 60
    while not info.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the shared vLLM server did not start; see {shared / 'vllm'}", pytrace=False)
        time.sleep(0.5)
    data = json.loads(info.read_text())
    if "error" in data:
        pytest.fail(f"the shared vLLM server did not start: {data['error']}", pytrace=False)
    return ServerInfo(base_urls=[data["base_url"]], model=data["model"], api_key=data["api_key"] or None)


DEFAULT_RUN_SENT: list[Any] = []  # every request the session's default run sent (`default_run_sent`)


@pytest.fixture(scope="session")
def default_run(vllm_server: ServerInfo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """One real run of `configs/default.yaml` (as shipped, at the smaller size of tests/real_run.py's
    `TEST_SIZE`; report included) against the session's vLLM server, shared by every test that needs
    one: its config and its `RunResult`. A test may run it again (a resume) but must not change what
    it wrote. The requests it sent, as the
    transport got them, are `default_run_sent`."""
    from generator.llm import transport
    from generator.run.pipeline import generate

    with pytest.MonkeyPatch.context() as mp:
        for api, func in list(transport.API_FUNCS.items()):

            async def recorded(session: Any, base_url: str, model: str, request: Any, _func: Any = func) -> Any:
                DEFAULT_RUN_SENT.append(request)
                return await _func(session, base_url, model, request)

            mp.setitem(transport.API_FUNCS, api, recorded)
        config = default_config(vllm_server, mp, tmp_path_factory.mktemp("default") / "run")
        result = generate(config, progress=False)
    return config, result


@pytest.fixture(scope="session")
def default_run_sent(default_run: tuple[Any, Any]) -> list[Any]:
    """The requests (generator.llm.requests.Request) that the session's default run sent."""
    return DEFAULT_RUN_SENT


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
