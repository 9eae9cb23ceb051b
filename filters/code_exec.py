"""Coding answers checked by running them: the answer's Python code blocks, its solution and the
tests the model wrote with it, run together in the sandbox (filters/sandbox.py); a row whose tests
fail, time out or try something the sandbox refuses is dropped with the error as its detail.

An answer without Python code is no coding answer and is kept. The tests are the answer's own:
`assert` statements, `test*` functions (called when the code does not call them) or unittest cases.
"""

from __future__ import annotations

import ast
import logging
import re
from concurrent.futures import ThreadPoolExecutor

from filters.base import KEEP, Filter, Verdict, drop
from filters.sandbox import Execution, Limits, Status, run_python
from generator.core.records import Record

# A fenced block: its tag (python, py, ...) and its text. The closing fence is on a line of its own.
FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
PYTHON_TAGS = frozenset({"python", "python3", "py", "py3"})

log = logging.getLogger(__name__)


def python_blocks(text: str) -> list[str]:
    """The Python code blocks of a Markdown answer, in order: those tagged as Python, and untagged
    ones that parse as Python (a block tagged as another language is not run)."""
    blocks = []
    for tag, body in FENCE.findall(text):
        if tag.lower() in PYTHON_TAGS or (not tag and _parses(body)):
            blocks.append(body)
    return blocks


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def count_tests(tree: ast.AST) -> int:
    """The checks in a program: `assert` statements outside test functions, `test*` functions and
    unittest cases (classes deriving from something named TestCase)."""
    n = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            n += 1
        elif isinstance(node, ast.ClassDef) and any(_name(b).endswith("TestCase") for b in node.bases):
            n += 1
    if n == 0:
        n = sum(isinstance(node, ast.Assert) for node in ast.walk(tree))
    return n


def _name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


class CodeExecFilter(Filter):
    """Runs the Python code blocks of each answer, solution and tests together, in the sandbox."""

    name = "code_exec"

    def __init__(
        self,
        time_s: float = 5.0,
        memory_mb: int = 512,
        require_tests: bool = True,
        require_code: bool = False,
        workers: int = 2,
    ):
        self.limits = Limits(time_s=time_s, memory_mb=memory_mb, call_tests=True)
        self.require_tests = require_tests
        self.require_code = require_code
        self.workers = workers
        self.warned = False

    def judge(self, records: list[Record]) -> list[Verdict]:
        verdicts: list[Verdict | None] = []
        programs: dict[int, str] = {}
        for i, r in enumerate(records):
            verdict, program = self._plan(r)
            verdicts.append(verdict)
            if program is not None:
                programs[i] = program
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for i, execution in zip(programs, pool.map(lambda p: run_python(p, self.limits), programs.values())):
                verdicts[i] = self._verdict(execution)
        return [v or KEEP for v in verdicts]

    def _plan(self, record: Record) -> tuple[Verdict | None, str | None]:
        """A verdict reached without running anything, or the program to run."""
        blocks = python_blocks(record.output)
        if not blocks:
            return (drop("no_code") if self.require_code else KEEP), None
        program = "\n\n".join(blocks)
        try:
            tree = ast.parse(program)
        except (SyntaxError, ValueError) as err:
            line = f" (line {err.lineno})" if isinstance(err, SyntaxError) and err.lineno else ""
            return drop("syntax_error", error=f"{type(err).__name__}: {getattr(err, 'msg', err)}{line}"), None
        tests = count_tests(tree)
        if tests == 0 and self.require_tests:
            return drop("no_tests"), None
        return None, program

    def _verdict(self, run: Execution) -> Verdict:
        if run.network == "hooks" and not self.warned:
            self.warned = True
            log.warning(
                "code_exec: this user may not make a network namespace (unprivileged user namespaces are "
                "off); the code's network is blocked by the sandbox's audit hook alone"
            )
        if run.status is Status.PASSED:
            return KEEP
        detail = {"error": run.error, "seconds": run.seconds}
        if run.status is Status.TIMEOUT:
            return drop("timeout", **detail)
        if run.status is Status.REFUSED:
            return drop("refused", refused=list(run.refused), **detail)
        return drop("tests_failed", **detail)
