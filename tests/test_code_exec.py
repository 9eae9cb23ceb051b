"""The code_exec filter: which answers it runs, and the sandbox holding hostile code (the tests marked
`subprocess` run real code in it, each under tight limits)."""

from __future__ import annotations

import json
import os
import re
import socket
import textwrap
import time
from pathlib import Path

import pytest

from filters.base import Filter, Verdict
from filters.code_exec import count_tests, python_blocks
from filters.registry import build_chain
from filters.specs import parse_specs
from generator.core.records import Record

# Generous on time (a loaded machine starts Python slowly; code that ends, ends at once), tight on memory.
TIGHT = {"name": "code_exec", "time_s": 8, "memory_mb": 256}


def code_exec(**params: object) -> Filter:
    [flt] = build_chain(parse_specs([{**TIGHT, **params}], where="filters.records"))
    return flt


def answer(*blocks: str, tag: str = "python") -> Record:
    body = "\n\n".join(f"```{tag}\n{textwrap.dedent(b).strip()}\n```" for b in blocks)
    return Record("Write a Python function.", "", f"Here is the solution.\n\n{body}\n\nDone.", {})


def judge(record: Record, **params: object) -> Verdict:
    [verdict] = code_exec(**params).judge([record])
    return verdict


SOLUTION = """
def add(a, b):
    return a + b
"""


# Unit tier: what is run, decided without running anything.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```python\nx = 1\n```\ntext\n```py\ny = 2\n```", ["x = 1\n", "y = 2\n"]),
        ("```\nx = 1\n```", ["x = 1\n"]),  # untagged and parses
        ("```\nSELECT * FROM t;\n```", []),  # untagged, not Python
        ("```sql\nSELECT 1\n```", []),
        ("```bash\necho hi\n```", []),
        ("no code at all", []),
        ("  ```python\n  x = 1\n  ```", ["  x = 1\n"]),  # indented fences (inside a list item)
    ],
    ids=["tagged", "untagged-python", "untagged-sql", "sql", "bash", "prose", "indented"],
)
def test_python_blocks(text: str, expected: list[str]) -> None:
    assert python_blocks(text) == expected


@pytest.mark.parametrize(
    ("code", "n"),
    [
        ("def f(): return 1\nassert f() == 1\nassert f() != 2", 2),
        ("def test_a():\n    assert 1\ndef test_b():\n    assert 2", 2),
        ("import unittest\nclass T(unittest.TestCase):\n    def test_a(self): self.assertTrue(1)", 2),
        ("def f(): return 1\nprint(f())", 0),
    ],
    ids=["asserts", "test-functions", "unittest", "none"],
)
def test_count_tests(code: str, n: int) -> None:
    import ast

    assert count_tests(ast.parse(code)) == n


def test_answers_decided_without_running() -> None:
    flt = code_exec(require_code=True)
    prose = Record("Explain recursion.", "", "Recursion is a function calling itself.", {})
    no_tests = answer(SOLUTION)
    broken = answer("def f(:\n    pass")
    verdicts = flt.judge([prose, no_tests, broken])
    assert [v.reason for v in verdicts] == ["no_code", "no_tests", "syntax_error"]
    assert "SyntaxError" in verdicts[2].detail["error"]
    assert code_exec().judge([prose]) == [Verdict(keep=True)]


# Subprocess tier: code run in the sandbox.


@pytest.mark.subprocess
def test_passing_failing_and_order_kept() -> None:
    good = answer(SOLUTION, "assert add(2, 3) == 5")
    bad = answer(SOLUTION, "def test_add():\n    assert add(2, 2) == 5, 'add(2, 2) should be 5'")
    prose = Record("Explain recursion.", "", "Recursion is a function calling itself.", {})
    unit = answer(
        SOLUTION,
        """
        import unittest
        class AddTest(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(1, 1), 3)
        """,
    )
    verdicts = code_exec().judge([good, bad, prose, unit])
    assert [v.reason for v in verdicts] == ["", "tests_failed", "", "tests_failed"]
    assert verdicts[1].detail["error"] == "AssertionError: add(2, 2) should be 5"
    assert "AddTest.test_add" in verdicts[3].detail["error"] and "2 != 3" in verdicts[3].detail["error"]


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "code",
    [
        "import os\nwhile True:\n    os.fork()",
        "import subprocess\nsubprocess.run(['sh', '-c', ':(){ :|:& };:'])",
        "import _posixsubprocess\n_posixsubprocess.fork_exec()",
        "import multiprocessing\nwhile True:\n    multiprocessing.Process(target=print).start()",
    ],
    ids=["os-fork", "shell-fork-bomb", "posixsubprocess", "multiprocessing"],
)
def test_fork_bomb_is_contained(code: str) -> None:
    start = time.monotonic()
    v = judge(answer(code, "assert True"))
    assert v.reason == "refused" and v.detail["error"].startswith("sandbox refused"), v
    assert time.monotonic() - start < 8  # refused at once, not stopped by the time limit


@pytest.mark.subprocess
def test_network_is_contained() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        v = judge(
            answer(
                f"""
                import socket
                for attempt in (
                    lambda: socket.socket().connect(("127.0.0.1", {port})),
                    lambda: socket.create_connection(("127.0.0.1", {port}), timeout=0.5).sendall(b"leak"),
                ):
                    try:
                        attempt()
                    except OSError:
                        pass
                import urllib.request
                urllib.request.urlopen("http://example.com", timeout=0.5)
                """,
                "assert True",
            )
        )
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected
    assert v.reason == "refused" and v.detail["refused"] == ["socket.__new__", "socket.getaddrinfo"]


@pytest.mark.subprocess
def test_writes_outside_its_folder_are_contained(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    v = judge(
        answer(
            f"""
            import os, shutil
            open(os.path.expanduser("~/inside.txt"), "w").write("ok")  # HOME is its own folder
            for attempt in (
                lambda: open({str(home / "pwned.txt")!r}, "w").write("x"),
                lambda: open({str(home / "notes.txt")!r}, "a").write("x"),
                lambda: os.remove({str(home / "notes.txt")!r}),
                lambda: shutil.rmtree({str(home)!r}),
                lambda: (os.symlink({str(home)!r}, "link"), open("link/pwned.txt", "w")),
                lambda: os.rename("inside.txt", {str(home / "moved.txt")!r}),
            ):
                try:
                    attempt()
                except OSError:
                    pass
            raise SystemExit(os.getcwd())
            """
        ),
        require_tests=False,
    )
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]
    assert (home / "notes.txt").read_text() == "mine"
    assert v.reason == "refused" and len(v.detail["refused"]) == 6
    assert str(home / "pwned.txt") in v.detail["refused"][0]


@pytest.mark.subprocess
def test_its_folder_is_private_and_removed() -> None:
    v = judge(
        answer("import os\nopen('scratch.txt', 'w').write('x')\nraise SystemExit(os.getcwd())"), require_tests=False
    )
    folder = v.detail["error"]
    assert v.reason == "tests_failed" and re.search(r"instructforge-exec-\w+/work$", folder), v
    assert not os.path.exists(folder) and not os.path.exists(os.path.dirname(folder))


@pytest.mark.subprocess
@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(60)"], ids=["busy-loop", "sleep"])
def test_infinite_loop_is_contained(code: str) -> None:
    start = time.monotonic()
    v = judge(answer(code, "assert True"), time_s=1)
    assert v.reason == "timeout"
    assert time.monotonic() - start < 6


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "code",
    ["blob = bytearray(8 * 2**30)", "cells = [0] * (2**31)", "while True:\n    print('x' * 100_000)"],
    ids=["bytearray", "list", "output"],
)
def test_huge_allocation_is_contained(code: str) -> None:
    v = judge(answer(code, "assert True"))
    assert v.reason == "tests_failed"
    assert v.detail["error"] in ("MemoryError", "OSError: [Errno 27] File too large")


TASKS = [
    "Write a Python function that returns the square of a number.",
    "Write a Python function that tells whether a number is even.",
    "Write a Python function that reverses a string.",
    "Write a Python function that downloads a web page.",
]
ANSWERS = {
    "square": "```python\ndef square(x):\n    return x * x\n```\n\n```python\nassert square(3) == 9\n```",
    "even": "```python\ndef is_even(n):\n    return n % 2 == 1\n```\n\n```python\nassert is_even(4)\n```",
    "reverses": "```python\ndef rev(s):\n    return s[::-1]\n```\n\n```python\nassert rev('ab') == 'ba'\n```",
    "downloads": "```python\nimport urllib.request\ndef get(u):\n    return urllib.request.urlopen(u).read()\n```"
    "\n\n```python\nassert get('http://example.com')\n```",
}


@pytest.mark.subprocess
def test_code_config_runs_the_answers_tests(tmp_path: Path) -> None:
    """configs/code.yaml against a fake model: the response_code template asks for tests, code_exec
    keeps the answers whose tests pass and puts the others in rejected.jsonl with their errors."""
    from fake_openai import FakeOpenAI

    from generator.config import load_config
    from generator.run.pipeline import generate

    def reply(body: dict, _i: int) -> str:
        prompt = body["messages"][-1]["content"]
        if "python" in body["messages"][0]["content"].lower() and "```python" in body["messages"][0]["content"]:
            return next(answer for key, answer in ANSWERS.items() if key in prompt)
        return "\n".join(f"{n}. {task}" for n, task in enumerate(TASKS, 1))

    fake = FakeOpenAI(reply=reply)
    url = fake.start_in_thread()
    try:
        overrides = {
            "run_dir": str(tmp_path / "run"),
            "model": {"name": "fake", "served_name": "fake-model"},
            "server": {"endpoints": [url]},
            "report": {"enabled": False},
            "generation.num_instructions": 4,
            "generation.max_rounds": 1,
            "filters.instructions": [{"name": "length"}, {"name": "exact_dedup"}],
        }
        result = generate(load_config("code.yaml", overrides=overrides), progress=False)
    finally:
        fake.stop_thread()
    kept = [json.loads(line) for line in (result.run_dir / "kept.jsonl").read_text().splitlines()]
    assert sorted(r["instruction"] for r in kept) == sorted(TASKS[0:3:2])
    rejected = [json.loads(line) for line in (result.run_dir / "rejected.jsonl").read_text().splitlines()]
    code_drops = {r["record"]["instruction"]: r for r in rejected if r["filter"] == "code_exec"}
    assert code_drops[TASKS[1]]["reason"] == "tests_failed" and code_drops[TASKS[1]]["error"] == "AssertionError"
    assert code_drops[TASKS[3]]["reason"] == "refused" and code_drops[TASKS[3]]["refused"] == ["socket.getaddrinfo"]


@pytest.mark.subprocess
def test_many_refusals_end_as_refused_not_blocked(tmp_path: Path) -> None:
    code = f"""
    for i in range(3000):
        try:
            open({str(tmp_path)!r} + f"/x{{i}}", "w")
        except OSError:
            pass
    """
    v = judge(answer(code), require_tests=False)
    assert v.reason == "refused" and len(v.detail["refused"]) == 20  # reported up to a cap: the pipe never fills
    assert not any(tmp_path.iterdir())


@pytest.mark.subprocess
def test_a_failing_answer_is_the_rejected_one_of_a_pair() -> None:
    from generator.config import PreferencesConfig
    from generator.run.preferences import PairMaker, Scored, pick

    cfg = PreferencesConfig(responses=2, checks=[{"name": "code_exec"}], judge=None, rejected="failed_check")
    maker = PairMaker(cfg)
    good = answer(SOLUTION, "assert add(2, 3) == 5").output
    bad = answer("def add(a, b):\n    return a - b", "assert add(2, 3) == 5").output
    task = Record("Write a Python function that adds two numbers.", "", "", {})
    [scored] = maker.score([(task, [Scored(0, bad, "stop"), Scored(1, good, "stop")])])
    chosen, rejected = pick(scored, cfg)
    assert (chosen.text, rejected.text, rejected.reason) == (good, bad, "tests_failed")


@pytest.mark.subprocess
def test_ordinary_standard_library_code_passes() -> None:
    code = """
    import asyncio, mimetypes, os, shelve, sqlite3, tempfile

    async def double(x):
        return 2 * x

    assert asyncio.run(double(2)) == 4
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write("scratch")
    with open(os.devnull, "w") as sink:
        sink.write("quiet")
    with shelve.open("store") as store:
        store["k"] = [1, 2]
    db = sqlite3.connect(":memory:")
    assert db.execute("select 1").fetchone() == (1,)
    assert mimetypes.guess_type("notes.txt")[0] == "text/plain"
    """
    assert judge(answer(code)) == Verdict(keep=True)


@pytest.mark.subprocess
def test_files_outside_cannot_be_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    v = judge(answer(f"print(open({str(secret)!r}).read())", "assert True"))
    assert v.reason == "tests_failed" and "PermissionError" in v.detail["error"]
    assert "hunter2" not in json.dumps(v.detail)
