"""The run directory's result store: batching, torn lines, fingerprints, one writer."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path

import pytest

from generator.config import parse_config
from generator.core.errors import ConfigError
from generator.llm.requests import ErrorKind, Result
from generator.run.context import fingerprint
from generator.run.store import RESULTS, Flush, RunStore, fingerprint_changes

FP = {"model": "m", "sampling": {"temperature": 0.7, "stop": ["\n"]}, "template": "a.jinja"}


def ok(rid: str, text: str = "t") -> Result:
    return Result(rid, [text], ["stop"], prompt_tokens=3, completion_tokens=1, endpoint="e", meta={"k": rid})


def bad(rid: str, kind: ErrorKind = ErrorKind.TIMEOUT) -> Result:
    return Result(rid, error=kind, error_message="x", endpoint="e")


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / RESULTS).read_text().splitlines()]


def test_results_read_back_equal_what_was_appended(tmp_path: Path) -> None:
    written = [ok("a", "é ü"), ok("b"), bad("c")]
    with RunStore(tmp_path, FP) as store:
        for r in written:
            store.append(r)
    store = RunStore(tmp_path, FP)
    assert store.done_ids == {"a", "b"}
    assert store.failed_ids == {"c"}
    assert list(store.results()) == written[:2]
    assert list(store.results(failed=True)) == written
    store.close()


def test_result_dict_round_trip_covers_every_field() -> None:
    result = Result("r", ["a", "b"], ["stop", "length"], 1, 2, None, "", "e", 3, 0.5, {"m": [1]})
    assert set(result.to_dict()) == {f.name for f in fields(Result)}
    assert Result.from_dict({**result.to_dict(), "added_later": 1}) == result


@pytest.mark.parametrize(
    ("written", "kind"),
    [
        ("timeout", ErrorKind.TIMEOUT),
        ("http_429", ErrorKind.HTTP_429),
        ("http_5xx", ErrorKind.HTTP_5XX),
        ("connection", ErrorKind.CONNECTION),
        ("bad_response", ErrorKind.BAD_RESPONSE),
        ("bad_request", ErrorKind.BAD_REQUEST),
    ],
    ids=["timeout", "http_429", "http_5xx", "connection", "bad_response", "bad_request"],
)
def test_error_kinds_read_back_as_the_enum_and_write_the_same_strings(written: str, kind: ErrorKind) -> None:
    line = {**Result("r").to_dict(), "error": written, "error_message": "x"}
    result = Result.from_dict(line)
    assert result.error is kind and result.error == written and not result.ok
    assert type(result.to_dict()["error"]) is str and result.to_dict() == line
    assert json.dumps(Result("r", error=kind).to_dict()) == json.dumps({**Result("r").to_dict(), "error": written})


def test_unknown_error_kind_from_a_newer_writer_reads_as_failed(tmp_path: Path) -> None:
    with RunStore(tmp_path, FP) as store:
        store.append(ok("a"))
    newer = {**bad("b").to_dict(), "error": "http_418"}
    with (tmp_path / RESULTS).open("a") as f:
        f.write(json.dumps(newer) + "\n")
    store = RunStore(tmp_path, FP)
    assert store.done_ids == {"a"} and store.failed_ids == {"b"}
    (result,) = [r for r in store.results(failed=True) if r.request_id == "b"]
    assert result.error == "http_418" and not result.ok and result.to_dict() == newer
    store.close()


def test_appends_are_batched_by_count_and_written_on_close(tmp_path: Path) -> None:
    store = RunStore(tmp_path, FP, flush=Flush(3, 60))
    store.flush()  # as if results had been streaming in
    store.append(ok("a"))
    store.append(ok("b"))
    assert (tmp_path / RESULTS).read_text() == ""
    store.append(ok("c"))
    assert [d["request_id"] for d in lines(tmp_path)] == ["a", "b", "c"]
    store.append(ok("d"))
    assert len(lines(tmp_path)) == 3
    store.close()
    assert len(lines(tmp_path)) == 4


def test_results_that_trickle_in_are_written_at_once(tmp_path: Path) -> None:
    store = RunStore(tmp_path, FP, flush=Flush(1000, 0.3))
    store.append(ok("a"))  # nothing written for a long time: write at once
    store.append(ok("b"))  # just written: wait for more
    assert len(lines(tmp_path)) == 1
    time.sleep(0.35)
    store.append(ok("c"))
    assert len(lines(tmp_path)) == 3
    store.close()


def test_torn_last_line_is_cut_off_and_appends_continue(tmp_path: Path) -> None:
    with RunStore(tmp_path, FP) as store:
        store.append(ok("a"))
        store.append(ok("b"))
    path = tmp_path / RESULTS
    path.write_bytes(path.read_bytes() + b'{"request_id": "c", "texts": ["hal')
    with RunStore(tmp_path, FP) as store:
        assert store.done_ids == {"a", "b"}
        store.append(ok("c"))
    assert [d["request_id"] for d in lines(tmp_path)] == ["a", "b", "c"]


def test_damaged_line_before_the_end_is_refused(tmp_path: Path) -> None:
    with RunStore(tmp_path, FP) as store:
        store.append(ok("a"))
    path = tmp_path / RESULTS
    path.write_bytes(path.read_bytes() + b"garbage\n" + json.dumps(ok("b").to_dict()).encode() + b"\n")
    with pytest.raises(ConfigError, match=r"results.jsonl, line 2: not a stored result \(b'garbage"):
        RunStore(tmp_path, FP)


def test_done_requests_are_never_stored_twice_and_failures_are_retried(tmp_path: Path) -> None:
    with RunStore(tmp_path, FP) as store:
        store.append(bad("a", ErrorKind.HTTP_5XX))
        store.append(bad("a", ErrorKind.TIMEOUT))
        store.append(ok("b"))
        assert store.done_ids == {"b"}
    with RunStore(tmp_path, FP) as store:
        assert store.failed_ids == {"a"}
        store.append(ok("a"))
        store.append(ok("a", "again"))
        store.append(ok("b", "again"))
        store.append(bad("b"))
        assert list(store.results(failed=True)) == [ok("b"), ok("a")]
    assert [(d["request_id"], d["error"]) for d in lines(tmp_path)] == [
        ("a", "http_5xx"),
        ("a", "timeout"),
        ("b", None),
        ("a", None),
    ]


@pytest.mark.parametrize(
    ("new", "named"),
    [
        ({**FP, "model": "other"}, "model: 'm' -> 'other'"),
        ({**FP, "sampling": {"temperature": 0.9, "stop": ["\n"]}}, "sampling.temperature: 0.7 -> 0.9"),
        ({**FP, "seed": 3}, "seed: (unset) -> 3"),
        ({k: v for k, v in FP.items() if k != "template"}, "template: 'a.jinja' -> (unset)"),
    ],
    ids=["model", "nested", "added", "removed"],
)
def test_changed_fingerprint_is_refused_naming_the_change(tmp_path: Path, new: dict, named: str) -> None:
    with RunStore(tmp_path, FP) as store:
        store.append(ok("a"))
    with pytest.raises(ConfigError, match="holds a run made with another config") as err:
        RunStore(tmp_path, new)
    assert named in str(err.value) and "fresh=True" in str(err.value) and "force=True" in str(err.value)
    with RunStore(tmp_path, new, force=True) as store:
        assert store.done_ids == {"a"}
    with RunStore(tmp_path, new) as store:  # forced once: the new config is now the run's
        assert store.done_ids == {"a"}
    with RunStore(tmp_path, FP, fresh=True) as store:
        assert store.done_ids == set()
    assert (tmp_path / RESULTS).read_text() == ""


def test_results_without_a_fingerprint_are_refused(tmp_path: Path) -> None:
    (tmp_path / RESULTS).write_text(json.dumps(ok("a").to_dict()) + "\n")
    with pytest.raises(ConfigError, match="fingerprint.json does not: cannot tell what made these results"):
        RunStore(tmp_path, FP)


def test_second_writer_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = RunStore(tmp_path, FP)
    with pytest.raises(ConfigError, match="is in use by another instructforge process"):
        RunStore(tmp_path, FP)
    first.close()
    RunStore(tmp_path, FP).close()


def test_stats_sessions_accumulate(tmp_path: Path) -> None:
    with RunStore(tmp_path, FP) as store:
        store.write_stats({"requests": 1})
        store.write_stats({"requests": 2})
    data = json.loads((tmp_path / "engine_stats.json").read_text())
    assert data == {"sessions": [{"requests": 1}, {"requests": 2}]}


def test_fingerprint_changes_lists_each_leaf() -> None:
    assert fingerprint_changes({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 4}) == [
        "a.c: 2 -> 3",
        "d: (unset) -> 4",
    ]


def test_get_reads_a_stored_result_back_after_reopen(tmp_path: Path) -> None:
    written = [ok("a", "é ü"), bad("b"), ok("c", "x" * 5000)]
    with RunStore(tmp_path, FP) as store:
        for r in written:
            store.append(r)
    with RunStore(tmp_path, FP) as store:
        assert store.get("a") == written[0] and store.get("c") == written[2]
        assert store.get("b") is None  # a failure is not a result to reuse
        assert store.get("nope") is None


def test_get_finds_a_result_still_in_the_buffer(tmp_path: Path) -> None:
    store = RunStore(tmp_path, FP, flush=Flush(100, 60))
    store.flush()  # as if results had been streaming in: the next appends stay in the buffer
    store.append(ok("a"))
    store.append(ok("b", "two"))
    assert (tmp_path / RESULTS).read_text() == ""
    assert store.get("b") == ok("b", "two") and store.get("a") == ok("a")
    store.append(ok("c"))  # appended after a flush: its offset follows what was written
    assert store.get("c") == ok("c")
    store.close()


def test_get_returns_the_first_success_and_ignores_failures_before_it(tmp_path: Path) -> None:
    with RunStore(tmp_path, FP) as store:
        store.append(bad("a"))
        assert store.get("a") is None
        store.append(ok("a", "first"))
        store.append(ok("a", "second"))  # already done: not stored
    with (tmp_path / RESULTS).open("a") as f:  # a second success written by hand
        f.write(json.dumps(ok("a", "third").to_dict()) + "\n")
    with RunStore(tmp_path, FP) as store:
        assert store.get("a") == ok("a", "first")
        assert list(store.results(failed=True)) == [ok("a", "first")]


def test_get_after_a_torn_line_was_cut_off(tmp_path: Path) -> None:
    with RunStore(tmp_path, FP) as store:
        store.append(ok("a"))
    path = tmp_path / RESULTS
    path.write_bytes(path.read_bytes() + json.dumps(ok("b").to_dict()).encode()[:-5])
    with RunStore(tmp_path, FP) as store:
        assert store.get("b") is None and store.get("a") == ok("a")
        store.append(ok("b", "again"))
        assert store.get("b") == ok("b", "again")
    with RunStore(tmp_path, FP) as store:
        assert store.get("b") == ok("b", "again") and store.get("a") == ok("a")


@pytest.mark.parametrize(
    ("old", "new", "changes"),
    [
        ({"g": {"a": 1}}, {"g": {"a": 1, "added": None}}, []),
        ({"g": {"a": 1, "dropped": None}}, {"g": {"a": 1}}, []),
        ({"g": {"a": 1}}, {"g": {"a": 1, "added": "x"}}, ["g.added: (unset) -> 'x'"]),
        ({"g": {"a": None}}, {"g": {"a": 0}}, ["g.a: None -> 0"]),
    ],
    ids=["new-null-setting", "dropped-null-setting", "new-set-setting", "null-to-value"],
)
def test_a_setting_added_with_a_null_default_is_no_change(old: dict, new: dict, changes: list[str]) -> None:
    assert fingerprint_changes(old, new) == changes


def test_seed_format_is_checked_and_does_not_change_old_fingerprints(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"generation.seed_format.*unknown format 'nope'"):
        parse_config({"generation": {"seed_format": "nope"}})
    new = fingerprint(parse_config({}))
    old = json.loads(json.dumps(new.defaults))  # a run directory written with every key
    del old["generation"]["seed_format"]  # ... before the setting existed
    assert fingerprint_changes(old, new.settings, new.defaults) == []
    alpaca = fingerprint(parse_config({"generation": {"seed_format": "alpaca"}}))
    assert alpaca.settings["generation"]["seed_format"] == "alpaca"


def test_more_rounds_or_a_larger_target_continue_a_run_that_stopped_on_them(tmp_path: Path) -> None:
    """`max_rounds` and `num_records` are stop conditions: a run that stopped at its last round is
    continued with more, also where its stored fingerprint (written before) holds the old value."""
    first = fingerprint(parse_config({"generation": {"max_rounds": 2, "num_records": 5}}))
    RunStore(tmp_path / "run", first).close()
    more = fingerprint(parse_config({"generation": {"max_rounds": 10, "num_records": 50}}))
    RunStore(tmp_path / "run", more).close()  # not refused
    old = {"generation": {"max_rounds": 2, "num_records": 5, "num_instructions": 7}}  # written with the keys
    assert fingerprint_changes(old, more.settings, more.defaults, more.ignored) == [
        "generation.num_instructions: 7 -> 30"
    ]
    other = fingerprint(parse_config({"generation": {"max_rounds": 10, "num_instructions": 7}}))
    with pytest.raises(ConfigError, match=r"another config \(generation.num_instructions: 30 -> 7\)"):
        RunStore(tmp_path / "run", other)


def test_changed_list_values_are_reported() -> None:
    assert fingerprint_changes({"stop": ["a"]}, {"stop": ["b"]}) == ["stop: ['a'] -> ['b']"]
    assert fingerprint_changes({"a": 1}, {"a": 1, "stop": ["b"]}) == ["stop: (unset) -> ['b']"]


def test_index_of_request_ids_is_compact_and_exact(monkeypatch):
    """Request ids move from the index's dict to its sorted arrays every `MERGE_AT`; `get`,
    membership and `done_ids` answer the same before and after, ids of another form included."""
    import hashlib

    from generator.core import keymap
    from generator.run import store as store_mod

    monkeypatch.setattr(keymap, "MERGE_AT", 7)
    index = store_mod._Index()
    ids = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(50)] + ["a", "B" * 32, "00" * 16]
    for n, rid in enumerate(ids):
        index.add(rid, n)
    assert [index.get(rid) for rid in ids] == list(range(len(ids)))
    assert index.get("ff" * 16) is None and "ff" * 16 not in index and ("AB" * 16) not in index
    assert store_mod._Ids(index) == set(ids) and len(index) == len(ids)
