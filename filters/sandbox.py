"""Run untrusted Python (a model's solution and its tests) in a contained child process.

The child (filters/sandbox_child.py) runs in a private temporary folder, deleted afterwards: the code
starts in `work/` (also its HOME and TMPDIR), the only place it may write. It runs on the standard
library alone (`python -I -S -B`: no site-packages, no environment variables, no bytecode written),
with a time limit (the wall clock here; CPU seconds in the kernel), a memory limit (address space),
a file size limit, no new processes, no network (a network namespace where the kernel allows one,
and an audit hook everywhere) and reads limited to its folder and Python's own files. The parent
kills the child's whole process group when it ends or runs out of time.

What this does not do: it is not a container. The audit hook is Python-level (PEP 578: not a
security boundary), so native code reached some way it does not see could step around the rules on
processes, files and sockets; without a network namespace (unprivileged user namespaces disabled)
the network rule is the hook's alone. RLIMIT_NPROC is not set: it counts every process of the user,
and root ignores it. Run code from models you do not trust on a machine or account you can lose.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

CHILD = Path(__file__).with_name("sandbox_child.py")
ERROR_CHARS = 300  # the error kept: the last line of the traceback, cut


@dataclass(frozen=True)
class Limits:
    time_s: float = 5.0
    memory_mb: int = 512
    file_mb: int = 16  # largest file the code may write, its printed output included
    call_tests: bool = False  # call the `test*` functions and unittest cases the code defines


class Status(str, Enum):
    PASSED = "passed"
    FAILED = "failed"  # an exception or a non-zero exit: `error` says which
    TIMEOUT = "timeout"
    REFUSED = "refused"  # the code tried something the sandbox refuses: `refused` says what
    CRASHED = "crashed"  # killed by a signal other than the time limit's


@dataclass(frozen=True)
class Execution:
    status: Status
    error: str = ""
    refused: tuple[str, ...] = ()
    network: str = ""  # `namespace` (the kernel's) or `hooks` (the audit hook's alone)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED


def run_python(source: str, limits: Limits = Limits()) -> Execution:  # noqa: B008 - a frozen dataclass
    """Run `source` as a script under `limits`; what came of it."""
    folder = Path(tempfile.mkdtemp(prefix="instructforge-exec-"))
    try:
        (folder / "work").mkdir()
        (folder / "main.py").write_text(source, encoding="utf-8")
        return _run(folder, limits)
    finally:
        shutil.rmtree(folder, onerror=_writable_then_retry)


def _run(folder: Path, limits: Limits) -> Execution:
    settings = {"time_s": limits.time_s, "memory_mb": limits.memory_mb, "file_mb": limits.file_mb}
    work = str(folder / "work")
    env = {"PATH": os.defpath, "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
    report_r, report_w = os.pipe()
    settings.update(call_tests=int(limits.call_tests), report_fd=report_w)
    command = [sys.executable, "-I", "-S", "-B", str(CHILD), str(folder), *(f"{k}={v}" for k, v in settings.items())]
    start = time.monotonic()
    with open(folder / "out", "wb") as out, open(folder / "err", "wb") as err:
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=work,
                env=env,
                pass_fds=(report_w,),
                start_new_session=True,  # its own process group, killed whole below
            )
        finally:
            os.close(report_w)
        try:
            code: int | None = proc.wait(timeout=limits.time_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _kill_group(proc)
    seconds = round(time.monotonic() - start, 3)
    with os.fdopen(report_r, "rb") as f:
        report = f.read().decode(errors="replace").splitlines()
    network = next((line.split(" ", 1)[1] for line in report if line.startswith("network ")), "")
    refused = tuple(dict.fromkeys(line.split(" ", 1)[1] for line in report if line.startswith("refused ")))
    status, error = _outcome(code, refused, _last_line(folder / "err"))
    return Execution(status, error, refused, network, seconds)


def _outcome(code: int | None, refused: tuple[str, ...], error: str) -> tuple[Status, str]:
    if code is None or code in (-signal.SIGXCPU, -signal.SIGKILL):
        return Status.TIMEOUT, "time limit reached"
    if refused:
        return Status.REFUSED, f"sandbox refused {refused[0]}"
    if code < 0:
        return Status.CRASHED, f"killed by {signal.Signals(-code).name}"
    if code > 0:
        return Status.FAILED, error or f"exit status {code}"
    return Status.PASSED, ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _last_line(path: Path) -> str:
    """The last non-empty line of the child's stderr (a traceback's exception), cut."""
    with path.open("rb") as f:
        f.seek(max(path.stat().st_size - 4096, 0))
        lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][:ERROR_CHARS] if lines else ""


def _writable_then_retry(function, path, _exc_info) -> None:  # shutil.rmtree onerror
    """The code may have taken write permission off its own folders: give it back and retry."""
    os.chmod(os.path.dirname(path), 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
    function(path)
