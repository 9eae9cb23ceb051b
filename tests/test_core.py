"""The shared core: atomic writes, the Jinja sandbox and its front matter, the text normalisers."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from generator.core import text
from generator.core.errors import ConfigError
from generator.core.files import (
    HOST,
    LEFTOVER,
    atomic_open,
    clean_stale,
    swap_dir,
    temp_name,
    write_atomic,
    write_json,
)
from generator.core.sandbox import body_source, environment, read_front_matter, text_template

# -- atomic writes --------------------------------------------------------------------------------


def test_write_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    write_json(path, {"b": 1, "é": [1]}, newline=True, indent=2, sort_keys=True, ensure_ascii=False)
    write_atomic(tmp_path / "raw.bin", b"\x00\x01")
    assert (
        path.read_bytes()
        == (json.dumps({"b": 1, "é": [1]}, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    )
    assert (tmp_path / "raw.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "raw.bin"]


def test_failure_mid_write_keeps_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError, match="disk full"), atomic_open(path) as f:
        f.write("half of the new")
        raise RuntimeError("disk full")
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_unserializable_json_keeps_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(TypeError):
        write_json(path, {"x": object()})
    assert path.read_text(encoding="utf-8") == "old" and len(list(tmp_path.iterdir())) == 1


def test_swap_dir_replaces_a_folder_whole(tmp_path: Path) -> None:
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "stale.parquet").write_text("x")
    with swap_dir(target) as tmp:
        assert tmp == tmp_path / temp_name("dataset") and not any(tmp.iterdir())
        (tmp / "new.parquet").write_text("y")
    assert [p.name for p in target.iterdir()] == ["new.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]  # no staging or old folder left


def test_swap_dir_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("old")
    with pytest.raises(RuntimeError), swap_dir(target) as tmp:
        (tmp / "config.json").write_text("half")
        raise RuntimeError("conversion failed")
    assert (target / "config.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_swap_dir_without_replace_keeps_the_first_writer(tmp_path: Path) -> None:
    target = tmp_path / "table"
    with swap_dir(target, replace=False) as tmp:
        (tmp / "meta.json").write_text("ours")
        target.mkdir()  # another process finished first
        (target / "meta.json").write_text("theirs")
    assert (target / "meta.json").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["table"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temp_names_carry_the_owner_pid_and_host() -> None:
    assert temp_name("dataset") == f".dataset.tmp-{os.getpid()}@{HOST}"
    assert temp_name("dataset", "old", pid=7) == f".dataset.old-7@{HOST}"
    assert LEFTOVER.match(temp_name("results.jsonl"))["name"] == "results.jsonl"


@pytest.mark.subprocess
def test_clean_stale_removes_dead_owners_only(tmp_path: Path) -> None:
    dead = _dead_pid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        leftovers = {
            "dead_dir": tmp_path / temp_name("dataset", pid=dead),
            "dead_old": tmp_path / temp_name("dataset", "old", pid=dead),
            "dead_file": tmp_path / temp_name("funnel.json", pid=dead),
            "pid_zero": tmp_path / temp_name("dataset", pid=0),
        }
        kept = {
            "ours": tmp_path / temp_name("dataset"),
            "sleeping_child": tmp_path / temp_name("dataset", pid=sleeper.pid),
            "other_host": tmp_path / f".dataset.tmp-{dead}@another-host",
            "not_ours": tmp_path / f".dataset.tmp-{dead}",  # no host: not our pattern
            "target": tmp_path / "dataset",
        }
        for path in [*leftovers.values(), *kept.values()]:
            path.mkdir() if "funnel" not in path.name else path.write_text("{}")
        assert sorted(clean_stale(tmp_path)) == sorted(leftovers.values())
        assert sorted(tmp_path.iterdir()) == sorted(kept.values())
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.subprocess
def test_clean_stale_by_name_and_a_reused_pid(tmp_path: Path) -> None:
    other = tmp_path / temp_name("model", pid=_dead_pid())
    other.mkdir()
    reused = tmp_path / temp_name("dataset")  # our pid, but the folder is older than this process
    reused.mkdir()
    os.utime(reused, (0, 0))
    assert clean_stale(tmp_path, "dataset") == [reused] and other.is_dir()
    assert clean_stale(tmp_path / "missing") == []


@pytest.mark.subprocess
def test_write_paths_remove_leftovers_of_a_killed_writer(tmp_path: Path) -> None:
    dead = _dead_pid()
    staged = tmp_path / temp_name("dataset", pid=dead)
    (staged / "data").mkdir(parents=True)
    half = tmp_path / temp_name("state.json", pid=dead)
    half.write_text("{")
    with swap_dir(tmp_path / "dataset") as tmp:
        (tmp / "x").write_text("y")
    write_json(tmp_path / "state.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "state.json"]


# -- freed memory -----------------------------------------------------------------------------------

_HEAP_KEPT = """
import ctypes, json, re
from generator.core.memory import give_back
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def anon():
    return int(re.search(r"RssAnon:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) // 1024
def touched(n):
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    return p
libc.free(touched(24 << 20))  # an mmapped block freed: glibc's mmap threshold rises past 16 MiB
blocks, pins = [], []
for _ in range(4):  # from the heap now, each with a live block above it
    blocks.append(touched(16 << 20))
    pins.append(touched(64 << 10))
held = anon()
for b in blocks:
    libc.free(b)
freed = anon()
gave = give_back()
print(json.dumps({"held": held, "freed": freed, "gave": gave, "after": anon()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc")
@pytest.mark.subprocess
def test_give_back_returns_the_heap_glibc_keeps() -> None:
    """64 MiB freed in the middle of the heap stay in the process (what a run's indexes leave
    behind); `give_back` returns them to the system."""
    out = subprocess.run([sys.executable, "-c", _HEAP_KEPT], capture_output=True, text=True, check=True)
    m = json.loads(out.stdout)
    assert m["gave"] is True
    assert m["freed"] > m["held"] - 16  # glibc kept the freed blocks
    assert m["after"] < m["freed"] - 48  # and gave them back when asked


# -- the sandbox ------------------------------------------------------------------------------------


@pytest.mark.parametrize("trim", [True, False])
def test_sandbox_blocks_dunder_access(trim: bool) -> None:
    env = environment(trim=trim)
    with pytest.raises(SecurityError):
        env.from_string("{{ x.__class__.__mro__[1].__subclasses__() }}").render(x="")


def test_sandbox_undefined_is_an_error_and_to_json_keeps_text() -> None:
    env = environment()
    with pytest.raises(UndefinedError):
        env.from_string("{{ missing }}").render()
    assert env.from_string("{{ v | to_json }}").render(v={"b": "<é>", "a": 1}) == '{"b": "<é>", "a": 1}'


def test_front_matter_read_and_blanked_keeping_lines() -> None:
    source = "{#---\ndescription: d\nvariables: {x: the x}\n---#}\nLine {{ x }}\n{{ y }"
    assert read_front_matter(source, "t.jinja") == {"description": "d", "variables": {"x": "the x"}}
    assert read_front_matter("no metadata", "t.jinja") is None
    body = body_source(source)
    assert body.count("\n") == source.count("\n") and body.endswith("#}Line {{ x }}\n{{ y }")
    with pytest.raises(ConfigError, match=r"t\.jinja:6: the template is not valid Jinja"):
        text_template(source, "t.jinja")


def test_front_matter_errors_name_the_line() -> None:
    with pytest.raises(ConfigError, match=r"t\.jinja:3: template metadata is not valid YAML"):
        read_front_matter("{#---\ndescription: d\nvariables: [\n---#}\n", "t.jinja")
    with pytest.raises(ConfigError, match=r"t\.jinja:2: template metadata must be a YAML mapping, got list"):
        read_front_matter("{#---\n- a\n---#}\n", "t.jinja")


def test_text_template_renders_verbatim_with_or_without_metadata() -> None:
    plain = text_template("A: {{ a }}\n{% if a %}\nyes\n{% endif %}\n")
    with_meta = text_template("{#---\ndescription: d\n---#}\nA: {{ a }}\n{% if a %}\nyes\n{% endif %}\n")
    assert plain.meta == {} and with_meta.meta == {"description": "d"}
    assert plain.variables == with_meta.variables == {"a"}
    assert plain.render(a="1") == with_meta.render(a="1") == "A: 1\n\nyes\n\n"


# -- text normalisation ---------------------------------------------------------------------------


def test_normaliser_docstring_examples() -> None:
    result = doctest.testmod(text)
    assert result.attempted >= 5 and result.failed == 0


@pytest.mark.parametrize(
    ("raw", "dedup", "seed", "echo"),
    [
        ("Please, tell me a joke!", "tell me a joke", "please, tell me a joke", "please tell me a joke"),
        ("  Sort:  THE_list.  ", "sort the_list", "sort: the_list", "sort the list"),
        ("Ｈｅｌｌｏ?", "", "ｈｅｌｌｏ", "ｈｅｌｌｏ"),
    ],
    ids=["polite", "underscore-and-colon", "full-width"],
)
def test_the_three_keys_differ_on_purpose(raw: str, dedup: str, seed: str, echo: str) -> None:
    assert (text.dedup_key(raw), text.seed_key(raw), text.echo_key(raw)) == (dedup, seed, echo)
