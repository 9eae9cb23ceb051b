#!/usr/bin/env python
"""The fault matrix: each fault class injected into a real `instructforge generate` run (a
subprocess), then the same command run again with the fault removed.

For every fault the run must end or continue as documented (`Fault.expect`), an error must be
one line without a traceback, and after the resume the dataset must hold exactly the ids of an
uninterrupted run (none lost, none extra) while results.jsonl holds no request stored twice and
the resume sends no request that was already stored. The table it prints has one row per fault:
outcome, lost, duplicated, time to notice (seconds from the injection to the run reacting: the
first request sent again after a fault, or the run's exit).

Fake-server rows (the default; about a minute): the server is tests/fake_openai.py, told over
`POST /_chaos` to fail mid-run. Real-server rows (`--real`; minutes): a managed vLLM server (no
`server.endpoints`), started by the run itself, so the bundled model must be prepared; the resume
starts another (the test suite resumes them on its session's server instead). vLLM on
CPU is not deterministic at temperature 0 across batchings, so these rows compare the resumed run
with its own replay (a rerun that must need no request and give the same dataset), not with a
separate uninterrupted run.

How each fault is made, as root or not, without mounts:
- disk full: `prlimit(RLIMIT_FSIZE)` on the running child at the size results.jsonl has then, so
  its next append fails (EFBIG, "File too large"; Python ignores SIGXFSZ);
- read-only run directory: `chattr +i` on the folder and its files as root (root ignores mode
  bits; the immutable flag stops even appends to files already open), `chmod a-w` otherwise;
- an endpoint that hangs: SIGSTOP to the fake server (connections are accepted by the kernel,
  nothing answers, health probes time out too);
- the managed server killed: SIGKILL to its process group, found among the run's children.

    python scripts/chaos.py                 # fake-server rows
    python scripts/chaos.py --real          # and the real-server rows
    python scripts/chaos.py --only disk_full sigkill_run --keep /tmp/chaos
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE_SERVER = ROOT / "tests" / "fake_openai.py"
FAKE_DELAY_S = 0.1  # per answer: slow enough to inject mid-run, fast enough for CI
NUM_INSTRUCTIONS = 80
# Engine settings for the fake rows: short timeouts so that hangs are seen in seconds. They are
# not in the run's fingerprint, so the resume may use other ones.
FAKE_ENGINE = {
    "concurrency": 8,
    "timeout_s": 2,
    "connect_timeout_s": 2,
    "backoff_base_s": 0.2,
    "backoff_max_s": 1,
    "probe_interval_s": 0.5,
    "no_endpoint_timeout_s": 4,
    "stop_grace_s": 0.5,
    "flush_interval_s": 0.1,
}
FILTERS = "{instructions: [{name: length}, {name: exact_dedup}], records: [{name: truncated}]}"
# No HTML report: it comes after everything a fault can hit, and encoding the rows for it (torch and
# MiniLM loaded in each run's process) was most of a fake row's time.
REPORT = "{enabled: false}"
# Seed 1 draws a fault for about every fifth request from the start (seed 0 draws none of 20% for
# its first 25): the rows see a steady share of faults.
FAULT_SEED = 1
RUN_LIMIT_S = 120.0
REAL_RUN_LIMIT_S = 900.0
REAL_INSTRUCTIONS = 8  # the real rows' run: a managed server's start is most of its time


@dataclass(frozen=True)
class Endpoint:
    """A vLLM server of the bundled model already running (the test session's): where the real
    rows resume, so that a row starts one managed server (the faulted run's), not two. Server
    settings are not in a run's fingerprint: the resume is the same run."""

    url: str
    key_env: str  # the environment variable holding its key


# -- the fake server ----------------------------------------------------------------------------


class FakeServer:
    """tests/fake_openai.py in a process of its own, with its faults switched over HTTP."""

    def __init__(self, log: Path) -> None:
        # Its stderr goes to a file: a pipe held open by it would keep a caller's `| tail` waiting.
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(FAKE_SERVER), "--delay", str(FAKE_DELAY_S), "--variants", "--hang", "60"],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.stop()
            raise RuntimeError(f"the fake server did not start: {self.url!r}")
        self._root = self.url.removesuffix("/v1")

    def chaos(self, **settings: object) -> None:
        req = urllib.request.Request(
            self._root + "/_chaos", data=json.dumps(settings).encode(), headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(req, timeout=10).read()

    def report(self) -> dict[str, object]:
        with urllib.request.urlopen(self._root + "/_chaos", timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.proc.terminate()
            self.proc.wait(10)


# -- runs ---------------------------------------------------------------------------------------


def write_config(path: Path, run_dir: Path, url: str | None, real: Endpoint | None = None) -> Path:
    """A config the echo server passes (`url`), or a managed real server's (`url` None), or the
    real model's on an endpoint already running (`real`: a real row's resume)."""
    if url is None:
        server = "{device: auto}" if real is None else f"{{endpoints: [{real.url}], api_key_env: {real.key_env}}}"
        text = (
            f"run_dir: {run_dir}\n"
            "model: {name: bundled, max_model_len: 2048}\n"
            f"server: {server}\n"
            "sampling: {temperature: 0.0, max_tokens: 96, seed: null}\n"
            "engine: {concurrency: 16, stop_grace_s: 0.5, flush_interval_s: 0.1}\n"
            f"generation: {{num_instructions: {REAL_INSTRUCTIONS}, instances: response}}\n"
            f"filters: {FILTERS}\n"
            f"report: {REPORT}\n"
        )
    else:
        text = (
            f"run_dir: {run_dir}\n"
            "model: {name: fake, served_name: fake-model}\n"
            f"server: {{endpoints: [{url}]}}\n"
            f"engine: {json.dumps(FAKE_ENGINE)}\n"
            f"generation: {{num_instructions: {NUM_INSTRUCTIONS}, instances: response}}\n"
            f"filters: {FILTERS}\n"
            f"report: {REPORT}\n"
        )
    path.write_text(text)
    return path


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def start_run(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "generator.cli", "generate", "-c", str(cfg)],
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_to_end(cfg: Path, limit_s: float) -> subprocess.CompletedProcess[str]:
    proc = start_run(cfg)
    try:
        out, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n(chaos: killed after {limit_s:g} s)"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def dataset_ids(run_dir: Path) -> list[str]:
    import pyarrow.parquet as pq

    ids: list[str] = []
    for shard in sorted((run_dir / "dataset" / "data").glob("*.parquet")):
        ids += pq.read_table(shard, columns=["id"]).column("id").to_pylist()
    return sorted(ids)


def stored(run_dir: Path) -> tuple[Counter[str], int]:
    """Successful results per request id in results.jsonl, and the number of failed results."""
    ok: Counter[str] = Counter()
    failed = 0
    path = run_dir / "results.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.endswith("}"):
                continue  # a torn last line (the next open cuts it off)
            data = json.loads(line)
            if data.get("error") is None:
                ok[data["request_id"]] += 1
            else:
                failed += 1
    return ok, failed


def result_lines(run_dir: Path) -> int:
    path = run_dir / "results.jsonl"
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def sessions(run_dir: Path) -> list[dict[str, object]]:
    path = run_dir / "engine_stats.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["sessions"]
    except (OSError, ValueError, KeyError):
        return []


@dataclass
class Reference:
    """The uninterrupted run every faulted one is compared with."""

    ids: list[str]
    lines: int  # results.jsonl lines: sets the injection point


# The real rows are compared with their own replay (see `_resume`), not with an uninterrupted run,
# so they need no reference run (a managed vLLM start and a whole run): they inject their fault once
# 4 results are stored, the floor of the injection point, which a real reference gave them anyway (a
# quarter of its 15 results).
REAL_REFERENCE = Reference(ids=[], lines=0)


def reference_run(work: Path) -> Reference:
    """The uninterrupted run of the fake-server rows."""
    work.mkdir(parents=True, exist_ok=True)
    server = FakeServer(work / "fake_server.log")
    try:
        done = run_to_end(write_config(work / "reference.yaml", work / "reference", server.url), RUN_LIMIT_S)
    finally:
        server.stop()
    if done.returncode != 0:
        raise RuntimeError(f"the reference run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return Reference(dataset_ids(work / "reference"), result_lines(work / "reference"))


# -- faults -------------------------------------------------------------------------------------


@dataclass
class Ctx:
    """What an injection may touch; `how` says how the fault was made (for the table)."""

    proc: subprocess.Popen[str] | None
    run_dir: Path
    server: FakeServer | None
    how: str = ""
    problems: list[str] = field(default_factory=list)  # what the injection itself found wrong


Undo = Callable[[], None]


def _nothing() -> None:
    pass


def server_faults(**settings: object) -> Callable[[Ctx], Undo]:
    def inject(ctx: Ctx) -> Undo:
        assert ctx.server is not None
        ctx.server.chaos(seed=FAULT_SEED, **settings)
        return lambda: ctx.server.chaos(rates={}, retry_after="0.01")  # type: ignore[union-attr]

    return inject


def hang_endpoint(ctx: Ctx) -> Undo:
    assert ctx.server is not None
    os.kill(ctx.server.proc.pid, signal.SIGSTOP)
    ctx.how = "SIGSTOP to the server"
    return lambda: os.kill(ctx.server.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]


def _prlimit_or_skip() -> None:
    if not hasattr(resource, "prlimit"):
        raise Skip("no prlimit on this system (Linux only)")


def fill_disk(ctx: Ctx) -> Undo:
    assert ctx.proc is not None
    _prlimit_or_skip()
    size = (ctx.run_dir / "results.jsonl").stat().st_size
    resource.prlimit(ctx.proc.pid, resource.RLIMIT_FSIZE, (size, size))
    ctx.how = f"RLIMIT_FSIZE={size}"
    return _nothing  # the limit dies with the process; the resume is a new one


def fill_disk_at_finish(ctx: Ctx) -> Undo:
    assert ctx.proc is not None
    _prlimit_or_skip()
    # Small files (the funnel, a temporary-folder probe) still fit; the dataset's files do not.
    resource.prlimit(ctx.proc.pid, resource.RLIMIT_FSIZE, (4096, 4096))
    ctx.how = "RLIMIT_FSIZE=4096 once engine_stats.json is written"
    return _nothing


def read_only_mechanism(probe_parent: Path) -> str | None:
    """How this process can make a folder read-only for the run: `chmod` (not root), `chattr`
    (root on a file system with the immutable flag), or None."""
    if os.geteuid() != 0:
        return "chmod"
    if shutil.which("chattr") is None:
        return None
    probe = Path(tempfile.mkdtemp(dir=probe_parent, prefix=".chattr-probe-"))
    try:
        made = subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode == 0
        if made:
            subprocess.run(["chattr", "-i", str(probe)], check=True)
        return "chattr" if made else None
    finally:
        probe.rmdir()


def make_read_only(run_dir: Path) -> tuple[str, Undo]:
    mechanism = read_only_mechanism(run_dir.parent)
    if mechanism == "chattr":
        subprocess.run(["chattr", "-R", "+i", str(run_dir)], check=True)
        return "chattr -R +i", lambda: subprocess.run(["chattr", "-R", "-i", str(run_dir)], check=True)
    if mechanism == "chmod":
        subprocess.run(["chmod", "-R", "a-w", str(run_dir)], check=True)
        return "chmod -R a-w", lambda: subprocess.run(["chmod", "-R", "u+w", str(run_dir)], check=True)
    raise Skip("cannot make a folder read-only for root here: no chattr +i on this file system")


def read_only_dir(ctx: Ctx) -> Undo:
    ctx.how, undo = make_read_only(ctx.run_dir)
    return undo


def kill_run(ctx: Ctx) -> Undo:
    assert ctx.proc is not None
    managed = None if ctx.server is not None else managed_server_pid(ctx.proc.pid)
    ctx.proc.send_signal(signal.SIGKILL)
    if managed is not None:  # it must die with the run (PR_SET_PDEATHSIG), not linger on its port
        deadline = time.monotonic() + 30
        while Path(f"/proc/{managed}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if Path(f"/proc/{managed}").exists():
            ctx.problems.append(f"the managed server (pid {managed}) outlived the killed run")
            os.killpg(managed, signal.SIGKILL)
    return _nothing


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def managed_server_pid(run_pid: int) -> int | None:
    for child in _children(run_pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"vllm" in cmdline:
            return child
    return None


def kill_managed_server(ctx: Ctx) -> Undo:
    assert ctx.proc is not None
    pid = managed_server_pid(ctx.proc.pid)
    if pid is None:
        raise RuntimeError("no managed vLLM server among the run's children")
    os.killpg(pid, signal.SIGKILL)  # the whole group: vLLM's EngineCore too
    ctx.how = f"SIGKILL to server group {pid}"
    return _nothing


class Skip(Exception):
    """This fault cannot be made on this machine (said in the table, not a failure)."""


@dataclass(frozen=True)
class Fault:
    name: str
    expect: str  # the documented outcome, in words
    inject: Callable[[Ctx], Undo]
    exit_code: int  # of the faulted run: 0 continues, 1 stops with an error, -9 killed
    error: str = ""  # regex the error line must match
    counted: str = ""  # the error kind the engine must count (a fault it absorbs)
    notice: str = "retry"  # "retry": first request sent again; "exit": the run's end; "": none
    max_notice_s: float = 10.0
    min_notice_s: float = 0.0
    # When to inject: "start" (before the run starts), "results" (a quarter of the reference's
    # results are stored), "stats" (every request is stored: engine_stats.json is written),
    # "staging" (the dataset is being written: a hidden staging folder appeared).
    when: str = "results"
    real: bool = False
    one_line: bool = True
    pending: str = ""  # why the row cannot pass yet ...
    pending_problems: tuple[str, ...] = ()  # ... and the starts of the problems that this explains


FAKE_FAULTS = [
    Fault(
        "5xx_20pct",
        "continues; retries counted (http_5xx)",
        server_faults(rates={"500": 0.1, "503": 0.1}),
        0,
        counted="http_5xx",
    ),
    Fault(
        "429_retry_after",
        "continues; each retry waits the Retry-After (2 s)",
        server_faults(rates={"429": 0.2}, retry_after="2"),
        0,
        counted="http_429",
        min_notice_s=2.0,
    ),
    Fault(
        "429_no_retry_after",
        "continues; retries after the backoff (engine.backoff_base_s)",
        server_faults(rates={"429": 0.2}, retry_after=None),
        0,
        counted="http_429",
        max_notice_s=1.5,  # well below the other row's Retry-After
    ),
    Fault(
        "timeouts",
        "continues; a request that times out (engine.timeout_s) is retried",
        server_faults(rates={"hang": 0.1}),
        0,
        counted="timeout",
        min_notice_s=FAKE_ENGINE["timeout_s"],
    ),
    Fault(
        "dropped_mid_body",
        "continues; retried (connection)",
        server_faults(rates={"close": 0.2}),
        0,
        counted="connection",
    ),
    Fault(
        "malformed_json",
        "continues; retried (bad_response)",
        server_faults(rates={"garbage": 0.2}),
        0,
        counted="bad_response",
    ),
    Fault(
        "endpoint_hangs",
        "stops: 'no endpoint left' after timeouts + engine.no_endpoint_timeout_s, exit 1",
        hang_endpoint,
        1,
        error=r"no endpoint left.*resume",
        notice="exit",
        max_notice_s=3 * FAKE_ENGINE["timeout_s"] + FAKE_ENGINE["no_endpoint_timeout_s"] + 5,
    ),
    Fault(
        "disk_full",
        "stops at the next write: one line naming the file, exit 1",
        fill_disk,
        1,
        error=r"cannot write .*results\.jsonl.*again to resume",
        notice="exit",
        max_notice_s=5,
    ),
    Fault(
        "disk_full_at_finish",
        "stops while writing the funnel or dataset: one line naming the file, exit 1",
        fill_disk_at_finish,
        1,
        error=r"cannot write .*again to resume",
        notice="exit",
        max_notice_s=15,  # the dataset stage starts with heavy imports
        when="stats",
    ),
    Fault(
        "read_only_run_dir",
        "stops at the next write: one line naming the file, exit 1",
        read_only_dir,
        1,
        error=r"cannot write .*again to resume",
        notice="exit",
        max_notice_s=5,
    ),
    Fault(
        "read_only_at_start",
        "refused before any request: one line naming the run directory, exit 1",
        read_only_dir,
        1,
        error=r"cannot write .*again to resume",
        notice="exit",
        max_notice_s=30,  # from the start of the process: its imports count
        when="start",
    ),
    Fault("sigkill_run", "killed (-9); the resume completes it", kill_run, -9, notice=""),
    Fault(
        "sigkill_dataset_write",
        "killed (-9) while the dataset is written; the resume completes it and leaves no staging folder",
        kill_run,
        -9,
        notice="",
        when="staging",
    ),
]

REAL_FAULTS = [
    Fault(
        "managed_server_killed",
        "stops within seconds: one error naming the dead server, its log tail and the resume hint, exit 1",
        kill_managed_server,
        1,
        # The whole message: the cause, where the finished requests are and how to resume, then
        # the end of the server's log, named.
        error=(
            r"^instructforge: error: the vLLM server \(pid \d+\) exited mid-run with signal SIGKILL\. "
            r"Every finished request is saved in .*\. Run the same command again to resume\. "
            r"End of .*vllm\.log:\n"
        ),
        notice="exit",
        max_notice_s=15,
        real=True,
        one_line=False,  # the log tail follows the error line
    ),
    Fault(
        "sigkill_run_managed",
        "killed (-9); the managed server dies with it; the resume completes it",
        kill_run,
        -9,
        notice="",
        real=True,
    ),
]

FAULTS = {f.name: f for f in FAKE_FAULTS + REAL_FAULTS}


# -- one row ------------------------------------------------------------------------------------


@dataclass
class Row:
    fault: Fault
    exit_code: int | None = None
    outcome: str = ""
    lost: int = 0
    extra: int = 0
    duplicated: int = 0
    resent: int = 0
    notice_s: float | None = None
    message: str = ""
    how: str = ""
    problems: list[str] = field(default_factory=list)
    skipped: str = ""

    @property
    def unexpected(self) -> list[str]:
        """The problems that the fault's `pending` note does not explain."""
        return [
            p for p in self.problems if not self.fault.pending_problems or not p.startswith(self.fault.pending_problems)
        ]

    @property
    def passed(self) -> bool:
        return not self.problems and not self.skipped

    @property
    def verdict(self) -> str:
        if self.skipped:
            return "skipped"
        if self.passed:
            return "pass"
        return "FAIL" if self.unexpected else "FAIL (pending)"

    def explain(self) -> str:
        lines = [f"{self.fault.name}: {self.verdict}; expected: {self.fault.expect}; got: {self.outcome}"]
        lines += [f"  - {p}" for p in self.problems]
        if self.fault.pending and self.problems:
            lines.append(f"  (pending: {self.fault.pending})")
        return "\n".join(lines)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("instructforge: error:")]


def _reached(when: str, run_dir: Path) -> bool:
    if when == "stats":
        return (run_dir / "engine_stats.json").exists()
    if when == "staging":
        return any(_hidden(p) for p in run_dir.iterdir())
    return True


def _hidden(path: Path) -> bool:
    """A hidden entry of the run directory other than its lock: a staging or old folder."""
    return path.name.startswith(".") and path.name != ".lock"


def leftovers(run_dir: Path) -> list[str]:
    """What a write path left behind: hidden staging or old folders beside the run's files, and
    `*.tmp` files of atomic writes anywhere in it."""
    found = {p.name for p in run_dir.iterdir() if _hidden(p)}
    found |= {str(p.relative_to(run_dir)) for p in run_dir.rglob("*.tmp")}
    return sorted(found)


def _wait_for_injection(proc: subprocess.Popen[str], run_dir: Path, after: int, fault: Fault, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        server_up = not fault.real or managed_server_pid(proc.pid) is not None
        if server_up and result_lines(run_dir) >= after and _reached(fault.when, run_dir):
            return
        time.sleep(0.001 if fault.when == "staging" else 0.02)  # the dataset's write is brief
    if proc.poll() is not None:
        raise Missed(f"the run ended (exit {proc.returncode}) before the fault could be injected")
    raise Missed(f"no {after} results after {limit_s:g} s")


class Missed(Exception):
    """The run ended before the moment the fault waits for."""


def run_fault(fault: Fault, work: Path, reference: Reference, resume_on: Endpoint | None = None, tries: int = 3) -> Row:
    """Inject `fault` into a run in `work`, resume it without the fault, and check everything.
    A real row resumes on `resume_on` when given (else on a managed server of its own). A run that
    ends before the fault's moment (a quick dataset write) is tried again, in a new folder, up to
    `tries` times."""
    for attempt in range(1, tries + 1):
        try:
            return _run_fault(fault, work if attempt == 1 else work / f"try-{attempt}", reference, resume_on)
        except Missed as why:
            missed = str(why)
    row = Row(fault)
    row.problems.append(f"{missed}, {tries} times")
    return row


def _run_fault(fault: Fault, work: Path, reference: Reference, resume_on: Endpoint | None) -> Row:
    row = Row(fault)
    work.mkdir(parents=True, exist_ok=True)
    run_dir = work / "run"
    server = None if fault.real else FakeServer(work / "fake_server.log")
    limit = REAL_RUN_LIMIT_S if fault.real else RUN_LIMIT_S
    undo: Undo = _nothing
    ctx = Ctx(None, run_dir, server)
    stored_then = 0  # successful results stored when the fault came: none of them may be lost
    try:
        cfg = write_config(work / "run.yaml", run_dir, None if server is None else server.url)
        again = cfg
        if resume_on is not None and server is None:
            again = write_config(work / "resume.yaml", run_dir, None, resume_on)
        if fault.when == "start":
            run_dir.mkdir()
            try:
                undo = fault.inject(ctx)
            except Skip as why:
                row.skipped = str(why)
                return row
            injected = time.time()
            ctx.proc = start_run(cfg)
        else:
            ctx.proc = start_run(cfg)
            _wait_for_injection(ctx.proc, run_dir, max(4, reference.lines // 4), fault, limit)
            injected = time.time()
            stored_then = len(stored(run_dir)[0])
            try:
                undo = fault.inject(ctx)
            except Skip as why:
                row.skipped = str(why)
                return row
        proc = ctx.proc
        try:
            _, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            row.problems.append(f"the faulted run did not end within {limit:g} s")
        ended = time.time()
        report = server.report() if server is not None and fault.notice == "retry" else {}
        undo()
        undo = _nothing
        row.how = ctx.how
        row.problems += ctx.problems
        row.exit_code = proc.returncode
        _check_faulted(row, err, report, injected, ended, run_dir)
        if (gone := stored_then - len(stored(run_dir)[0])) > 0:
            row.problems.append(f"{gone} results stored before the fault are gone")
        _resume(row, again, run_dir, reference, limit)
    finally:
        if ctx.proc is not None and ctx.proc.poll() is None:  # an error of this script's own
            ctx.proc.kill()
            ctx.proc.communicate()
        undo()
        if server is not None:
            server.stop()
    return row


def _check_faulted(row: Row, err: str, report: dict[str, object], injected: float, ended: float, run_dir: Path) -> None:
    fault = row.fault
    code = row.exit_code
    errors = _error_lines(err)
    row.message = errors[0].removeprefix("instructforge: error: ") if errors else ""
    if code == 0:
        last = sessions(run_dir)[-1:] or [{}]
        kinds = last[0].get("errors") or {}
        retried = last[0].get("retried", 0)
        failed = last[0].get("failed", 0)
        row.outcome = f"continued, exit 0; {retried} retries ({', '.join(f'{k} {v}' for k, v in kinds.items()) or '-'})"
        if failed:
            row.outcome += f"; {failed} failed for good"
        if fault.counted and not kinds.get(fault.counted):
            row.problems.append(f"no {fault.counted} counted in engine_stats.json: the fault never reached the run")
    elif code == -signal.SIGKILL:
        row.outcome = "killed (-9)"
    else:
        row.outcome = f"stopped, exit {code}"
    if code != fault.exit_code:
        row.problems.append(f"exit {code}, expected {fault.exit_code}: {err.strip()[-600:]}")
    if "Traceback" in err:
        tail = "\n      ".join(err.strip().splitlines()[-12:])
        row.problems.append(f"a traceback on stderr, ending:\n      {tail}")
    if fault.exit_code not in (0, -signal.SIGKILL):
        if len(errors) != 1:
            row.problems.append(f"{len(errors)} error lines, expected 1")
        elif fault.one_line and err.strip().splitlines()[-1] != errors[0]:
            row.problems.append("the error is not the last line of stderr (more than one line?)")
        # A multi-line error (a log tail after the first line) is matched as a whole.
        text = row.message if fault.one_line else err[err.find("instructforge: error:") :]
        if fault.error and not re.search(fault.error, text, re.DOTALL):
            row.problems.append(f"the error does not match {fault.error!r}: {text[:600]!r}")
    if fault.notice == "exit":
        row.notice_s = ended - injected
    elif fault.notice == "retry" and report:
        first_retry = report.get("first_retry")
        row.notice_s = None if first_retry is None else float(first_retry) - injected  # type: ignore[arg-type]
        if row.notice_s is None:
            row.problems.append("no request was sent again after a fault")
    if row.notice_s is not None:
        # The limits are for a quiet machine; a busy one slows the run's imports and steps alike,
        # so each limit gets the time a fresh process takes to import the run, measured now.
        allowed = fault.max_notice_s + LOAD_SLACK * import_seconds()
        if row.notice_s > allowed:
            row.problems.append(
                f"noticed after {row.notice_s:.1f} s, expected at most {fault.max_notice_s:g} s "
                f"+ {LOAD_SLACK:g} x {import_seconds():.1f} s (the run's imports, timed now)"
            )
        if row.notice_s < fault.min_notice_s:
            row.problems.append(f"noticed after {row.notice_s:.1f} s, expected at least {fault.min_notice_s:g} s")


# How many times the import time is added to a row's notice limit (see `import_seconds`).
LOAD_SLACK = 5.0
_IMPORTS = "import generator.run.pipeline, generator.publish.dataset, datasets, pyarrow.parquet"
_import_s: list[float] = []


def import_seconds() -> float:
    """Seconds a fresh interpreter takes to import what a run imports, timed once per session: a
    reference measured beside the rows (about 1 s on a quiet two-core machine, several under load)."""
    if not _import_s:
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", _IMPORTS], check=True, cwd=ROOT, env=_env())
        _import_s.append(time.monotonic() - start)
    return _import_s[0]


def _resume(row: Row, cfg: Path, run_dir: Path, reference: Reference, limit: float) -> None:
    before, _ = stored(run_dir)
    n_sessions = len(sessions(run_dir))
    again = run_to_end(cfg, limit)
    if again.returncode != 0:
        row.problems.append(f"the resume failed (exit {again.returncode}): {again.stderr.strip()[-600:]}")
        row.lost = len(reference.ids)
        return
    ids = dataset_ids(run_dir)
    after, failed = stored(run_dir)
    resumed = sessions(run_dir)[n_sessions:]  # before any replay below adds its own session
    if row.fault.real:
        # vLLM on CPU is not deterministic at temperature 0 once requests batch differently, so a
        # separate uninterrupted run is no reference. The resumed run is compared with its own
        # replay instead: a rerun of the finished run must need no request (none lost) and give
        # the same dataset.
        replay = run_to_end(cfg, limit)
        replayed, _ = stored(run_dir)
        row.lost = len(set(replayed) - set(after))
        row.extra = len(set(dataset_ids(run_dir)) ^ set(ids)) if replay.returncode == 0 else len(ids)
    else:
        row.lost = len(set(reference.ids) - set(ids))
        row.extra = len(set(ids) - set(reference.ids))
    row.duplicated = sum(n - 1 for n in after.values() if n > 1) + len(ids) - len(set(ids))
    if resumed:
        new_ok = len(set(after) - set(before))
        row.resent = max(0, int(resumed[-1].get("ok", 0)) - new_ok)  # type: ignore[call-overload]
    for what, count in (("lost", row.lost), ("extra", row.extra), ("duplicated", row.duplicated)):
        if count:
            against = "its own replay" if row.fault.real else "the uninterrupted run"
            row.problems.append(f"{count} {what} against {against}")
    if row.resent:
        row.problems.append(f"the resume sent {row.resent} requests that were already stored")
    if left := leftovers(run_dir):
        row.problems.append(f"left behind in the run directory after the resume: {', '.join(left)}")


# -- the table ----------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    """The matrix as a Markdown table, then each error message."""
    lines = [
        "| fault | made by | documented outcome | outcome | lost | duplicated | time to notice | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        how = r.how or _HOW.get(r.fault.name, "-")
        if r.skipped:
            lines.append(f"| {r.fault.name} | {how} | {r.fault.expect} | {r.skipped} | - | - | - | skipped |")
            continue
        notice = "-" if r.notice_s is None else f"{r.notice_s:.1f} s"
        lost = f"{r.lost}" + (f" (+{r.extra} extra)" if r.extra else "")
        lines.append(
            f"| {r.fault.name} | {how} | {r.fault.expect} | {r.outcome} | {lost} | {r.duplicated} | {notice} "
            f"| {r.verdict} |"
        )
    messages = [f"- {r.fault.name}: `{r.message}`" for r in rows if r.message]
    return "\n".join(lines + (["", "Error messages (one line each):", *messages] if messages else []))


_HOW = {
    "5xx_20pct": "`rates` 500+503 at 20%",
    "429_retry_after": "`rates` 429 at 20%, Retry-After: 2",
    "429_no_retry_after": "`rates` 429 at 20%, no Retry-After",
    "timeouts": "`rates` hang at 10%",
    "dropped_mid_body": "`rates` close at 20%",
    "malformed_json": "`rates` garbage at 20%",
    "sigkill_run": "SIGKILL to the run",
    "sigkill_run_managed": "SIGKILL to the run",
    "sigkill_dataset_write": "SIGKILL to the run once a hidden staging folder exists",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="also the rows with a managed vLLM server (minutes)")
    parser.add_argument("--only", nargs="+", choices=sorted(FAULTS), metavar="FAULT", help="these rows only")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    faults = [FAULTS[n] for n in args.only] if args.only else FAKE_FAULTS + (REAL_FAULTS if args.real else [])
    work = args.keep or Path(tempfile.mkdtemp(prefix="chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows: list[Row] = []
    try:
        refs: dict[bool, Reference] = {True: REAL_REFERENCE}
        for fault in faults:
            if fault.real not in refs:
                refs[fault.real] = reference_run(work / "fake")
            row = run_fault(fault, work / fault.name, refs[fault.real])
            rows.append(row)
            print(row.explain(), file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    imports = f"; the run's imports took {_import_s[0]:.1f} s (the notice limits' load allowance)" if _import_s else ""
    print(f"\n{len(rows)} faults in {time.monotonic() - started:.0f} s{imports}", file=sys.stderr)
    return 1 if any(r.unexpected for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
